"""Payload encryption (issue 5): the codec, key rotation, tampering, keys never shown, no plaintext
in a real workflow history, the codec server for the Temporal UI, and the dev stack's wiring."""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload, SearchAttributes
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DefaultFailureConverterWithEncodedAttributes
from temporalio.testing import WorkflowEnvironment

from config.codec import (
    ENCODING,
    METADATA_KEY_ID,
    EncryptionCodec,
    PayloadDecryptionError,
    PayloadKeyError,
    codec_from_settings,
    dev_key_path,
    ensure_dev_key,
    new_key,
)
from config.settings import Settings
from config.temporal import DATA_CONVERTER, data_converter
from devstack.codec_server import codec_app, codec_app_from_settings, codec_endpoint, serving
from devstack.dev import dev_server_command
from domain.program import ProgramStatus
from tests.conftest import free_port
from tests.harness import add_subscription, enrolment, stack, start_time_skipping
from tests.test_program_lifecycle import complete_onboarding
from tests.test_program_refusals import history_len

K1, K2 = new_key(), new_key()


def keys(**kv: str) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in kv.items()}


def plain(text: str) -> Payload:
    return pydantic_data_converter.payload_converter.to_payloads([{"email": text}])[0]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("TECHCONNECT_"):
            monkeypatch.delenv(name)
    yield


# ---- the codec --------------------------------------------------------------------------
async def test_round_trip_hides_data_and_original_encoding() -> None:
    codec = EncryptionCodec(keys(k1=K1), "k1")
    original = [plain("carol@acme.example"), plain("second")]
    encoded = await codec.encode(original)
    assert len(encoded) == 2
    for p in encoded:
        assert p.metadata["encoding"] == ENCODING and p.metadata[METADATA_KEY_ID] == b"k1"
        assert set(p.metadata) == {"encoding", METADATA_KEY_ID}  # json/plain is inside, encrypted
        assert b"carol" not in p.SerializeToString()
    assert encoded[0].data != (await codec.encode(original[:1]))[0].data  # a fresh nonce every time
    assert await codec.decode(encoded) == original
    # Payloads written before encryption was turned on still read.
    assert await codec.decode([original[0]]) == [original[0]]


async def test_payload_from_an_old_key_decodes_after_rotation() -> None:
    old = EncryptionCodec(keys(k1=K1), "k1")
    written_before = await old.encode([plain("before rotation")])
    rotated = EncryptionCodec(keys(k1=K1, k2=K2), "k2")
    assert await rotated.decode(written_before) == [plain("before rotation")]
    written_after = await rotated.encode([plain("after rotation")])
    assert written_after[0].metadata[METADATA_KEY_ID] == b"k2"
    assert await rotated.decode(written_after) == [plain("after rotation")]
    # Once k1 is dropped from the list, what it wrote no longer reads: retire a key only
    # after the histories it wrote have passed their retention.
    with pytest.raises(PayloadDecryptionError, match="unknown key id 'k1'"):
        await EncryptionCodec(keys(k2=K2), "k2").decode(written_before)


async def test_tampering_fails() -> None:
    codec = EncryptionCodec(keys(k1=K1, k2=K2), "k1")
    [good] = await codec.encode([plain("carol@acme.example")])

    flipped = Payload()
    flipped.CopyFrom(good)
    data = bytearray(good.data)
    data[-1] ^= 0x01
    flipped.data = bytes(data)
    truncated = Payload(metadata=dict(good.metadata), data=good.data[:20])
    relabelled = Payload(metadata={**good.metadata, METADATA_KEY_ID: b"k2"}, data=good.data)  # key id is bound
    for bad in (flipped, truncated, relabelled):
        with pytest.raises(PayloadDecryptionError, match="tampered"):
            await codec.decode([bad])
    # The key id itself is authenticated (associated data): relabelled to another id holding the very
    # same key material, the payload still fails. Without the binding this case alone would decrypt.
    same_key = EncryptionCodec(keys(k1=K1, k2=K1), "k1")
    [good] = await same_key.encode([plain("carol@acme.example")])
    relabelled = Payload(metadata={**good.metadata, METADATA_KEY_ID: b"k2"}, data=good.data)
    with pytest.raises(PayloadDecryptionError, match="tampered"):
        await same_key.decode([relabelled])


def test_bad_key_configuration_is_refused_without_showing_the_key() -> None:
    short = base64.b64encode(b"x" * 16).decode()
    with pytest.raises(PayloadKeyError) as info:
        codec_from_settings(Settings(payload_keys={"k1": short}))  # type: ignore[dict-item]
    assert "k1" in str(info.value) and short not in str(info.value)
    with pytest.raises(PayloadKeyError, match="not valid base64"):
        codec_from_settings(Settings(payload_keys={"k1": "not base64!"}))  # type: ignore[dict-item]
    with pytest.raises(PayloadKeyError, match="TECHCONNECT_PAYLOAD_KEY_ID"):
        codec_from_settings(Settings(payload_keys={"k1": K1, "k2": K2}))  # type: ignore[dict-item]
    with pytest.raises(PayloadKeyError, match="'k3' is not among"):
        codec_from_settings(Settings(payload_keys={"k1": K1}, payload_key_id="k3"))  # type: ignore[dict-item]


# ---- keys from settings, never shown ------------------------------------------------------------
def test_keys_from_the_environment_are_never_shown(
    clean_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TECHCONNECT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TECHCONNECT_PAYLOAD_KEYS", json.dumps({"k1": K1, "k2": K2}))
    monkeypatch.setenv("TECHCONNECT_PAYLOAD_KEY_ID", "k2")
    monkeypatch.setenv("TECHCONNECT_CODEC_TOKEN", "codec-token-value")
    settings = Settings()
    codec = codec_from_settings(settings)
    assert codec is not None and codec.active_key_id == "k2" and codec.key_ids == ["k1", "k2"]

    with caplog.at_level(logging.INFO):
        logging.getLogger("techconnect.test").info("settings: %s / %r", settings, settings)
        logging.getLogger("techconnect.test").info("codec: %r, converter: %r", codec, data_converter(settings))
    shown = "\n".join([repr(settings), str(settings), settings.model_dump_json(), str(settings.model_dump()),
                       caplog.text, repr(codec)])
    for secret in (K1, K2, "codec-token-value"):
        assert secret not in shown
    assert "k2" in shown and "**********" in shown  # the ids show, the keys do not


def test_dev_key_is_generated_once_owner_only_and_configured_keys_win(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert codec_from_settings(settings) is None  # nothing configured: payloads stay plain
    path = ensure_dev_key(settings)
    assert path == dev_key_path(settings) and path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = path.read_text()
    assert ensure_dev_key(settings) == path and path.read_text() == first  # a second start keeps it
    codec = codec_from_settings(settings)
    assert codec is not None and codec.active_key_id.startswith("dev-")
    # The CLI in another terminal (same data_dir) finds the same key.
    assert codec_from_settings(Settings(data_dir=tmp_path)).active_key_id == codec.active_key_id  # type: ignore[union-attr]

    configured = Settings(data_dir=tmp_path, payload_keys={"prod": K1})  # type: ignore[dict-item]
    assert ensure_dev_key(configured) is None
    assert codec_from_settings(configured).active_key_id == "prod"  # type: ignore[union-attr]


def test_one_data_converter_with_the_codec_only_when_keys_are_configured(tmp_path: Path) -> None:
    assert data_converter(Settings(data_dir=tmp_path)) is DATA_CONVERTER
    assert data_converter() is DATA_CONVERTER and DATA_CONVERTER.payload_codec is None
    dc = data_converter(Settings(data_dir=tmp_path, payload_keys={"k1": K1}))  # type: ignore[dict-item]
    assert isinstance(dc.payload_codec, EncryptionCodec)
    assert dc.payload_converter_class is DATA_CONVERTER.payload_converter_class
    # Failure messages may name a contact: they are encrypted too.
    assert dc.failure_converter_class is DefaultFailureConverterWithEncodedAttributes


# ---- a real workflow: nothing readable in history ---------------------------------------------
def payloads_in(message: Message) -> Iterator[Payload]:
    """Every Payload in a proto message, search attributes aside (the server indexes those in clear)."""
    if isinstance(message, SearchAttributes):
        return
    if isinstance(message, Payload):
        yield message
        return
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if isinstance(value, Message):
            yield from payloads_in(value)
            continue
        # A repeated field or a map (e.g. a header's or a memo's payloads by name).
        for item in (value.values() if field.message_type.GetOptions().map_entry else value):
            if isinstance(item, Message):
                yield from payloads_in(item)


@pytest_asyncio.fixture
async def encrypted_env(tmp_path: Path) -> AsyncIterator[tuple[WorkflowEnvironment, Settings]]:
    settings = Settings(data_dir=tmp_path, payload_keys={"k1": K1})  # type: ignore[dict-item]
    env = await start_time_skipping(data_converter(settings))
    try:
        yield env, settings
    finally:
        await env.shutdown()


async def test_a_programme_stores_no_plaintext_in_history(
    encrypted_env: tuple[WorkflowEnvironment, Settings], sqlite_url: str, tmp_path: Path
) -> None:
    env, settings = encrypted_env
    async with stack(env, sqlite_url, tmp_path / "stack") as st:
        today = (await st.now()).date()
        await add_subscription(st.sessions, "cipher", today - timedelta(days=1), today + timedelta(days=800))
        handle = await st.start(enrolment("cipher", today))
        await st.wait_enrolled("cipher")
        status = await complete_onboarding(st, "cipher", today)  # the inventory names cs-fe-01 and db-01
        assert status.inventory is not None and status.inventory.servers[0].hostname == "cs-fe-01"
        await history_len(handle)

        # The client with the key reads the state as usual.
        read = await st.status("cipher")
        assert read.contacts[0].email == "carol@cipher.example" and read.phase.value == "running"

        # A client without the codec (what the server, its database and an admin without the key see).
        blind = Client(env.client.service_client, namespace=env.client.namespace, data_converter=DATA_CONVERTER)
        history = await blind.get_workflow_handle(handle.id).fetch_history()
        raw = b"".join(e.SerializeToString() for e in history.events)
        for secret in (b"carol@cipher.example", b"bob@cipher.example", b"alice@support.example",
                       b"cs-fe-01", b"db-01", b"Cipher Corp", b"Agreed the plan"):
            assert secret not in raw, secret
        found = [p for e in history.events for p in payloads_in(e)]
        assert len(found) > 50  # inputs, results, Update arguments, summaries...
        # Every payload encrypted, but for the SDK's own patch markers (`workflow.patched`): Temporal writes
        # their details, the patch id, in clear by design; tests/test_patching.py names what it is.
        patch_markers = [e for e in history.events if e.marker_recorded_event_attributes.marker_name == "core_patch"]
        # `save-waits-for-update-in-flight` is asked only when a save meets an Update in flight (a race).
        assert [p.data for e in patch_markers for p in payloads_in(e) if b"save-waits-for-update" not in p.data] == [
            b'{"id":"enrolment-local-activities","deprecated":false}',
            b'{"id":"programme-upserts-only-changes","deprecated":false}',
            b'{"id":"enrolment-prepared-in-one-call","deprecated":false}',
            b'{"id":"enrolment-mails-at-once","deprecated":false}',
            b'{"id":"welcome-in-one-activity","deprecated":false}',
            b'{"id":"kickoff-meeting-date-is-its-due-date","deprecated":false}',
            b'{"id":"update-saves-before-returning","deprecated":false}']
        # Nor the bookkeeping core writes beside a local activity's result (the enrolment's since
        # `enrolment-local-activities`): its `data` detail names the activity, attempt and times, nothing else;
        # the result itself is encrypted like any payload.
        bookkeeping = [e.marker_recorded_event_attributes.details["data"].payloads[0] for e in history.events
                       if e.marker_recorded_event_attributes.marker_name == "core_local_activity"]
        assert bookkeeping and all(set(json.loads(p.data)) <= {
            "seq", "attempt", "activity_id", "activity_type", "complete_time", "backoff", "original_schedule_time",
            "activation_index"} for p in bookkeeping), [p.data for p in bookkeeping]
        found = [p for e in history.events if e not in patch_markers for p in payloads_in(e) if p not in bookkeeping]
        assert {p.metadata["encoding"] for p in found} == {ENCODING}
        assert {p.metadata[METADATA_KEY_ID] for p in found} == {b"k1"}
        # Not vacuous: the same history, decrypted with the key, does hold them.
        codec = codec_from_settings(settings)
        assert codec is not None
        clear = b"".join(p.data for p in await codec.decode(found))
        for secret in (b"carol@cipher.example", b"cs-fe-01", b"Cipher Corp", b"Agreed the plan"):
            assert secret in clear, secret
        with pytest.raises(Exception, match="encoding"):
            await blind.get_workflow_handle(handle.id).query("get_status", result_type=ProgramStatus)
        # The application database is not Temporal: the outbox and documents stay readable there.
        assert st.mails(to="carol@cipher.example")


# ---- the codec server -------------------------------------------------------------------------
def as_json(payloads: list[Payload]) -> dict[str, object]:
    return {"payloads": [{"metadata": {k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                          "data": base64.b64encode(p.data).decode()} for p in payloads]}


UI = "http://localhost:8233"


async def test_codec_server_decodes_for_the_token_holder_only() -> None:
    codec = EncryptionCodec(keys(k1=K1), "k1")
    app = codec_app(codec, token="s3cret", origins=["http://127.0.0.1:8233", UI])
    original = plain("carol@acme.example")
    body = as_json(await codec.encode([original]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://codec") as http:
        # The UI's preflight: no token on it (browsers never send one), our origin and headers allowed.
        pre = await http.options("/decode", headers={
            "Origin": UI, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-namespace,authorization"})
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == UI
        assert "x-namespace" in pre.headers["access-control-allow-headers"].lower()
        evil = await http.options("/decode", headers={"Origin": "http://evil.example",
                                                      "Access-Control-Request-Method": "POST"})
        assert evil.status_code == 400 and "access-control-allow-origin" not in evil.headers

        for auth in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            refused = await http.post("/decode", json=body, headers={"X-Namespace": "default", **auth})
            assert refused.status_code == 401 and "carol" not in refused.text

        ok = await http.post("/decode", json=body, headers={
            "Authorization": "Bearer s3cret", "X-Namespace": "default", "Origin": UI})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == UI
        [decoded] = ok.json()["payloads"]
        assert base64.b64decode(decoded["metadata"]["encoding"]) == b"json/plain"
        assert json.loads(base64.b64decode(decoded["data"])) == {"email": "carol@acme.example"}

        enc = await http.post("/encode", json=as_json([original]), headers={"Authorization": "Bearer s3cret"})
        [p] = enc.json()["payloads"]
        assert base64.b64decode(p["metadata"]["encoding"]) == ENCODING

        tampered = await http.post("/decode", headers={"Authorization": "Bearer s3cret"}, json={"payloads": [
            {**body["payloads"][0], "data": base64.b64encode(b"\0" * 40).decode()}]})  # type: ignore[index]
        assert tampered.status_code == 400 and "tampered" in tampered.json()["message"]
        assert (await http.post("/decode", content=b"not json",
                                headers={"Authorization": "Bearer s3cret"})).status_code == 400


async def test_codec_server_from_dev_settings_serves_on_its_port(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, codec_port=free_port())
    assert codec_app_from_settings(settings) is None  # no key, nothing to decode
    ensure_dev_key(settings)
    app = codec_app_from_settings(settings)
    assert app is not None
    codec = codec_from_settings(settings)
    assert codec is not None
    body = as_json(await codec.encode([plain("carol@acme.example")]))
    # Embedded stack: no token, bound to loopback.
    async with serving(app, settings.codec_host, settings.codec_port) as url, httpx.AsyncClient() as http:
        assert url == codec_endpoint(settings)
        answer = await http.post(f"{url}/decode", json=body, headers={"X-Namespace": "default"})
        assert answer.status_code == 200
        assert json.loads(base64.b64decode(answer.json()["payloads"][0]["data"])) == {"email": "carol@acme.example"}


def test_dev_server_command_points_the_ui_at_the_codec_server(tmp_path: Path) -> None:
    cmd = dev_server_command(Settings(data_dir=tmp_path), "127.0.0.1", 7233, 8233)
    assert cmd[cmd.index("--ui-codec-endpoint") + 1] == "http://127.0.0.1:8234"
    assert "--ui-codec-endpoint" not in dev_server_command(Settings(data_dir=tmp_path, codec_port=0),
                                                           "127.0.0.1", 7233, 8233)
