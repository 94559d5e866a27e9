"""What a workflow run shares with the worker and what stays its own in the sandbox (worker.py, issue 16).

The worker passes through `domain/` and the modules of workflows/ that hold no workflow (mixins and
helpers), so a cached run does not carry its own copy of them; each workflow's own module is still imported
for every run (its code restricted, its module state the run's own), its bytecode read once per worker.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Any

import pytest
import temporalio.workflow
from temporalio.api.common.v1 import Payloads
from temporalio.api.failure.v1 import Failure
from temporalio.worker._workflow_instance import WorkflowInstanceDetails
from temporalio.worker.workflow_sandbox._runner import _fake_info

from config.temporal import DATA_CONVERTER
from tests.test_architecture import OURS, ROOT, nondeterministic_calls
from worker import WORKFLOWS, SharedCodeLoader, sandbox_passthrough, workflow_runner


def sandboxed(cls: type) -> Any:
    """A sandboxed instance of `cls` as the worker builds one for a run (before its first activation).
    Reads the SDK's private `importer.new_modules`: the run's own `sys.modules`."""
    return workflow_runner().create_instance(WorkflowInstanceDetails(
        payload_converter_factory=DATA_CONVERTER._new_payload_converter,
        failure_converter_class=DATA_CONVERTER.failure_converter_class, interceptor_classes=[],
        defn=temporalio.workflow._Definition.must_from_class(cls), info=_fake_info, randomness_seed=-1,
        extern_functions={}, disable_eager_activity_execution=False, worker_level_failure_exception_types=[],
        patch_activation_callback=None, last_completion_result=Payloads(), last_failure=Failure()))


def own_modules(instance: Any) -> set[str]:
    """The modules of ours the run imported for itself rather than took from the worker."""
    return {name for name, mod in instance.importer.new_modules.items()
            if name.split(".")[0] in OURS and sys.modules.get(name) is not mod}


@pytest.mark.parametrize("cls", WORKFLOWS, ids=lambda c: c.__name__)
async def test_a_run_imports_only_its_own_workflow_module(cls: type) -> None:
    assert own_modules(sandboxed(cls)) == {"workflows", cls.__module__}


async def test_runs_share_the_bytecode_and_the_helpers_not_the_module() -> None:
    from workflows.program import ProgramWorkflow

    one, two = (sandboxed(ProgramWorkflow).importer.new_modules["workflows.program"] for _ in range(2))
    assert one is not two and one.ProgramWorkflow is not two.ProgramWorkflow
    assert one.ProgramWorkflow.run.__code__ is two.ProgramWorkflow.run.__code__
    # `from workflows import activity_calls as act`: the worker's module, not a copy per run.
    assert one.act is two.act is sys.modules["workflows.activity_calls"]


def test_the_workflow_modules_are_not_passed_through() -> None:
    passed = sandbox_passthrough()
    assert "workflows" not in passed and "domain" in passed and "workflows.activity_calls" in passed
    for cls in WORKFLOWS:
        assert not any(cls.__module__ == m or cls.__module__.startswith(f"{m}.") for m in passed), cls


def test_shared_bytecode_is_reread_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "flow.py"
    path.write_text("X = 1\n")
    first = SharedCodeLoader("flow", str(path)).get_code("flow")
    assert SharedCodeLoader("flow", str(path)).get_code("flow") is first
    path.write_text("X = 22\n")
    namespace: dict[str, Any] = {}
    exec(SharedCodeLoader("flow", str(path)).get_code("flow"), namespace)
    assert namespace["X"] == 22


# ---- what the passed-through sources may not do: the sandbox no longer stops them at run time
MUTATORS = {"append", "extend", "insert", "update", "setdefault", "add", "discard", "remove", "pop", "popitem",
            "clear", "sort", "reverse"}


def module_state_writes(source: str) -> list[str]:
    """Writes to module-level state from a function (`global`, item or attribute assignment, a mutating
    method on a module-level name) and memoising decorators: state one run would leave to the next."""
    tree = ast.parse(source)
    names = {t.id for node in tree.body if isinstance(node, ast.Assign | ast.AnnAssign)
             for t in (node.targets if isinstance(node, ast.Assign) else [node.target]) if isinstance(t, ast.Name)}
    found: list[str] = []
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        found += [f"@{ast.unparse(d)} on {fn.name}" for d in fn.decorator_list if "cache" in ast.unparse(d)]
        for node in ast.walk(fn):
            if isinstance(node, ast.Global):
                found.append(f"global {', '.join(node.names)} in {fn.name}")
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in MUTATORS
                  and isinstance(node.func.value, ast.Name) and node.func.value.id in names):
                found.append(f"{ast.unparse(node.func)}() in {fn.name}")
            elif isinstance(node, ast.Assign | ast.AugAssign):
                for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    if isinstance(t, ast.Subscript | ast.Attribute) and isinstance(t.value, ast.Name) \
                            and t.value.id in names:
                        found.append(f"{ast.unparse(t)} = ... in {fn.name}")
    return found


def passed_through_sources() -> list[Path]:
    helpers = {m.removeprefix("workflows.") for m in sandbox_passthrough() if m.startswith("workflows.")}
    return sorted((ROOT / "domain").glob("*.py")) + sorted(p for p in (ROOT / "workflows").glob("*.py")
                                                          if p.stem in helpers)


def test_passed_through_sources_hold_no_state_and_no_clock() -> None:
    sources = passed_through_sources()
    assert len(sources) > 30
    for path in sources:
        text = path.read_text(encoding="utf-8")
        bad = module_state_writes(text) + nondeterministic_calls(text)
        assert not bad, f"{path.relative_to(ROOT)} is passed through the sandbox but has {bad}"


@pytest.mark.parametrize("line", ["SEEN.append(x)", "SEEN[x] = 1", "global COUNT", "CONFIG.limit = 3"])
def test_the_state_check_can_fail(line: str) -> None:
    source = f"SEEN: list[int] = []\nCOUNT = 0\nCONFIG = object()\n\ndef f(x: int) -> None:\n    {line}\n"
    assert module_state_writes(source), line
    assert module_state_writes("import functools\n\n@functools.lru_cache\ndef f() -> int:\n    return 1\n")
    assert not module_state_writes("LIMIT = 3\n\ndef f(seen: list[int]) -> None:\n    seen.append(LIMIT)\n")
