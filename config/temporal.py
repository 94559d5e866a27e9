"""The Temporal client: one data converter and one way to connect, for every part."""

from __future__ import annotations

import dataclasses
from typing import Any

from pydantic import BaseModel
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.contrib.pydantic import PydanticPayloadConverter
from temporalio.converter import (
    BinaryNullPayloadConverter,
    CompositePayloadConverter,
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
)
from temporalio.service import TLSConfig

from config.settings import Settings, TemporalSettings


class _NullIsNoModel(BinaryNullPayloadConverter):
    """`null` where a pydantic model is expected is refused, not handed over as None.

    Temporal's converter decodes a `binary/null` payload to None whatever the type hint, so an
    Update or signal sent with a null argument reached the handler as None and its first
    `inp.by` failed the workflow task (found by tests/test_fuzz_inputs.py). Refused at decoding,
    an Update is rejected like any invalid input and a signal is dropped with a warning.
    """

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        if isinstance(type_hint, type) and issubclass(type_hint, BaseModel):
            raise TypeError(f"null is not a {type_hint.__name__}")
        return super().from_payload(payload, type_hint)


class TechConnectPayloadConverter(CompositePayloadConverter):
    """Pydantic's payload converter (JSON through pydantic), with `null` refused for models."""

    def __init__(self) -> None:
        super().__init__(*(_NullIsNoModel() if isinstance(c, BinaryNullPayloadConverter) else c
                           for c in PydanticPayloadConverter().converters.values()))


# Every workflow, activity, update, signal and query speaks pydantic models.
# This is the converter without encryption (no payload key configured).
DATA_CONVERTER: DataConverter = DataConverter(payload_converter_class=TechConnectPayloadConverter)


def data_converter(settings: Settings | None = None) -> DataConverter:
    """The one data converter: pydantic, plus the payload codec when keys are configured.

    With a codec, failure messages and stack traces move into the encoded attributes too
    (a failure message may name a contact's address); clients with the key read them as usual.
    """
    from config.codec import codec_from_settings

    codec = codec_from_settings(settings) if settings is not None else None
    if codec is None:
        return DATA_CONVERTER
    return dataclasses.replace(DATA_CONVERTER, payload_codec=codec,
                               failure_converter_class=DefaultFailureConverterWithEncodedAttributes)


async def connect(settings: Settings | TemporalSettings | None = None) -> Client:
    """Connect with TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE (and API key or mTLS for Temporal Cloud).

    Pass the whole `Settings` (the payload keys live there); a bare `TemporalSettings` connects
    without encryption.
    """
    full = settings if isinstance(settings, Settings) else Settings() if settings is None else None
    s = full.temporal if full is not None else settings
    assert isinstance(s, TemporalSettings)
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
                                data_converter=data_converter(full))
