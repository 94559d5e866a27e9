"""The Temporal client: one data converter and one way to connect, for every part."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.service import TLSConfig

from starter.settings import TemporalSettings

# Every workflow, activity, update, signal and query speaks pydantic models.
DATA_CONVERTER: DataConverter = pydantic_data_converter


async def connect(settings: TemporalSettings | None = None) -> Client:
    """Connect with TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE (and API key or mTLS for Temporal Cloud)."""
    s = settings or TemporalSettings()
    tls: TLSConfig | bool = False
    if s.tls_client_cert_path and s.tls_client_key_path:
        tls = TLSConfig(
            client_cert=s.tls_client_cert_path.read_bytes(),
            client_private_key=s.tls_client_key_path.read_bytes(),
            server_root_ca_cert=s.tls_server_root_ca_cert_path.read_bytes() if s.tls_server_root_ca_cert_path else None,
        )
    elif s.tls or s.api_key:
        tls = True
    return await Client.connect(s.address, namespace=s.namespace, api_key=s.api_key, tls=tls,
                                data_converter=DATA_CONVERTER)
