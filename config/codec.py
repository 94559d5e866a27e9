"""Payload encryption: a Temporal PayloadCodec with AES-256-GCM and key ids, so keys rotate.

Every payload the SDK sends (workflow and activity inputs and results, Update and signal
arguments, query results, memos, activity/timer summaries, failure messages) is
serialised whole (metadata included, so even its original encoding is hidden) and
encrypted with the *active* key. The result carries two metadata entries in clear:
`encoding: binary/encrypted` and `encryption-key-id: <id>`. Decoding picks the key by
that id, so after a rotation (new key active, old key kept in the list) histories
written with the old key still read. The key id is also bound as associated data: a
payload whose key id was changed, or whose bytes were touched, fails to decrypt.

What stays in clear, by Temporal's design: workflow IDs, type names, search attributes
(the server indexes them) and event timestamps. So search attributes hold IDs and
phases, never e-mail addresses or hostnames.

Keys come from settings (`TECHCONNECT_PAYLOAD_KEYS`, `TECHCONNECT_PAYLOAD_KEY_ID`) or,
for the embedded stack, from `data_dir/payload-key.json`, which `techconnect dev`
generates on first start. Key material is never logged and never put in an error message.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, Field, SecretStr, ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

if TYPE_CHECKING:
    from config.settings import Settings

ENCODING = b"binary/encrypted"
METADATA_ENCODING = "encoding"
METADATA_KEY_ID = "encryption-key-id"
DEV_KEY_FILE = "payload-key.json"
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # the GCM standard nonce; random per payload
_AAD_PREFIX = b"techconnect/payload/v1:"


class PayloadKeyError(ValueError):
    """The key configuration is unusable (names key ids, never key material)."""


class PayloadDecryptionError(ValueError):
    """A payload cannot be decrypted: unknown key id, or its bytes were changed."""


def _aad(key_id: str) -> bytes:
    return _AAD_PREFIX + key_id.encode("utf-8")


class EncryptionCodec(PayloadCodec):
    """Encode with the active key; decode with any known key. Plain payloads decode unchanged."""

    def __init__(self, keys: Mapping[str, bytes], active_key_id: str) -> None:
        if not keys:
            raise PayloadKeyError("no payload keys")
        if active_key_id not in keys:
            raise PayloadKeyError(f"the active payload key {active_key_id!r} is not among the keys "
                                  f"({', '.join(sorted(keys))})")
        for key_id, key in keys.items():
            if len(key) != KEY_BYTES:
                raise PayloadKeyError(f"payload key {key_id!r} has {len(key)} bytes, not {KEY_BYTES}")
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.active_key_id = active_key_id

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._ciphers)

    def __repr__(self) -> str:
        return f"EncryptionCodec(active_key_id={self.active_key_id!r}, key_ids={self.key_ids!r})"

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        key_id = self.active_key_id
        cipher = self._ciphers[key_id]
        out = []
        for p in payloads:
            nonce = os.urandom(NONCE_BYTES)
            sealed = cipher.encrypt(nonce, p.SerializeToString(), _aad(key_id))
            out.append(Payload(metadata={METADATA_ENCODING: ENCODING, METADATA_KEY_ID: key_id.encode("utf-8")},
                               data=nonce + sealed))
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            if p.metadata.get(METADATA_ENCODING) != ENCODING:
                # Written before encryption was turned on: still readable.
                out.append(p)
                continue
            key_id = p.metadata.get(METADATA_KEY_ID, b"").decode("utf-8", errors="replace")
            cipher = self._ciphers.get(key_id)
            if cipher is None:
                raise PayloadDecryptionError(f"payload encrypted with unknown key id {key_id!r} "
                                             f"(known: {', '.join(self.key_ids)})")
            try:
                plain = cipher.decrypt(p.data[:NONCE_BYTES], p.data[NONCE_BYTES:], _aad(key_id))
            except InvalidTag:
                raise PayloadDecryptionError(
                    f"payload with key id {key_id!r} failed authentication: tampered or truncated") from None
            out.append(Payload.FromString(plain))
        return out


# ---- keys from settings ---------------------------------------------------------------


class PayloadKeyFile(BaseModel):
    """`data_dir/payload-key.json`: the same two settings, for the embedded stack."""

    payload_key_id: str | None = None
    payload_keys: dict[str, SecretStr] = Field(default_factory=dict)


def new_key() -> str:
    """A fresh random AES-256 key, base64 (what TECHCONNECT_PAYLOAD_KEYS holds)."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def decode_key(key_id: str, value: SecretStr) -> bytes:
    try:
        key = base64.b64decode(value.get_secret_value(), validate=True)
    except (binascii.Error, ValueError):
        raise PayloadKeyError(f"payload key {key_id!r} is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise PayloadKeyError(f"payload key {key_id!r} decodes to {len(key)} bytes; AES-256 needs {KEY_BYTES}")
    return key


def dev_key_path(settings: Settings) -> Path:
    return settings.data_dir / DEV_KEY_FILE


def _configured(settings: Settings) -> tuple[dict[str, SecretStr], str | None]:
    if settings.payload_keys:
        return settings.payload_keys, settings.payload_key_id
    path = dev_key_path(settings)
    if not path.exists():
        return {}, None
    try:
        data = PayloadKeyFile.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, ValidationError):
        # The message names the file only: the validation error would echo key material.
        raise PayloadKeyError(f"{path} is not a valid payload key file") from None
    return data.payload_keys, data.payload_key_id


def codec_from_settings(settings: Settings) -> EncryptionCodec | None:
    """The codec for these settings, or None when no key is configured (payloads stay plain)."""
    keys, active = _configured(settings)
    if not keys:
        return None
    if active is None:
        if len(keys) != 1:
            raise PayloadKeyError(f"{len(keys)} payload keys ({', '.join(sorted(keys))}): "
                                  f"set TECHCONNECT_PAYLOAD_KEY_ID to the one that encrypts")
        active = next(iter(keys))
    return EncryptionCodec({key_id: decode_key(key_id, value) for key_id, value in keys.items()}, active)


def ensure_dev_key(settings: Settings) -> Path | None:
    """Embedded stack: generate data_dir/payload-key.json once, unless keys are configured.

    Returns the file's path when the dev key file is the key source, None when settings hold keys.
    """
    if settings.payload_keys:
        return None
    path = dev_key_path(settings)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    key_id = f"dev-{os.urandom(4).hex()}"
    body = json.dumps({"payload_key_id": key_id, "payload_keys": {key_id: new_key()}}, indent=2) + "\n"
    # Owner-only from the first byte; O_EXCL: two starts at once cannot write two keys.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(body)
    return path
