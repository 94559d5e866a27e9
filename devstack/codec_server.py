"""Codec server: lets the Temporal Web UI (and `temporal --codec-endpoint`) show decrypted payloads.

The Temporal codec server protocol: `POST /encode` and `POST /decode`, body and answer
`{"payloads": [...]}` in protobuf JSON (base64 metadata and data). The UI calls it from the
browser, so it answers CORS preflights for the UI's origin (`settings.codec_cors_origins`)
and accepts the `X-Namespace` header the UI sends.

Who sees decoded payloads: whoever can reach this endpoint *and* passes its bearer
token (`TECHCONNECT_CODEC_TOKEN`; the UI sends it when "pass access token" is set, the CLI
with `--codec-auth`). Without a token the server is open: that is meant for the embedded
stack only, where `techconnect dev` binds it to loopback (127.0.0.1), so only this
machine's users see decoded payloads. Anything else must set a token (and TLS in front).

`techconnect dev` serves it on its own port (settings.codec_port, 8234); the portal can
mount `codec_app(...)` under a path later (the UI endpoint is then `https://portal/codec`).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Sequence

from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from temporalio.api.common.v1 import Payloads
from temporalio.converter import PayloadCodec

from config.codec import PayloadDecryptionError, codec_from_settings
from config.settings import Settings

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024 * 1024  # a history page of payloads; refuse anything bigger


def codec_app(codec: PayloadCodec, token: str | None = None, origins: Sequence[str] = ()) -> Starlette:
    """An ASGI app serving /encode and /decode for `codec`; `token` set: `Authorization: Bearer <token>`."""
    expected = f"Bearer {token}".encode() if token else None

    def authorised(request: Request) -> bool:
        if expected is None:
            return True
        given = request.headers.get("authorization", "").encode()
        return hmac.compare_digest(given, expected)

    async def transform(request: Request, decode: bool) -> Response:
        if not authorised(request):
            return JSONResponse({"message": "a bearer token is required"}, status_code=401,
                                headers={"WWW-Authenticate": 'Bearer realm="techconnect-codec"'})
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return JSONResponse({"message": "body too large"}, status_code=413)
        try:
            payloads = json_format.Parse(body, Payloads())
        except (json_format.ParseError, UnicodeDecodeError) as exc:
            return JSONResponse({"message": f"body is not {{\"payloads\": [...]}}: {exc}"}, status_code=400)
        try:
            out = await (codec.decode(payloads.payloads) if decode else codec.encode(payloads.payloads))
        except PayloadDecryptionError as exc:
            return JSONResponse({"message": str(exc)}, status_code=400)
        namespace = request.headers.get("x-namespace", "")
        log.info("codec %s: %d payloads (namespace %r)", "decode" if decode else "encode", len(out), namespace)
        answer = json_format.MessageToDict(Payloads(payloads=out))
        return Response(json.dumps({"payloads": answer.get("payloads", [])}), media_type="application/json")

    async def encode(request: Request) -> Response:
        return await transform(request, decode=False)

    async def decode(request: Request) -> Response:
        return await transform(request, decode=True)

    return Starlette(
        routes=[Route("/encode", encode, methods=["POST"]), Route("/decode", decode, methods=["POST"])],
        middleware=[Middleware(
            CORSMiddleware, allow_origins=list(origins), allow_methods=["POST", "OPTIONS"],
            allow_headers=["Content-Type", "X-Namespace", "Authorization"], allow_credentials=True, max_age=600,
        )],
    )


def codec_app_from_settings(settings: Settings) -> Starlette | None:
    """The codec server for these settings; None when no payload key is configured."""
    codec = codec_from_settings(settings)
    if codec is None:
        return None
    token = settings.codec_token.get_secret_value() if settings.codec_token else None
    return codec_app(codec, token, settings.codec_cors_origins)


LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def check_exposure(settings: Settings) -> None:
    """An open codec server (no token) decrypts for anyone who reaches it: loopback only."""
    if settings.codec_token is None and settings.codec_host not in LOOPBACK:
        raise SystemExit(f"codec server on {settings.codec_host}: set TECHCONNECT_CODEC_TOKEN, or keep "
                         f"TECHCONNECT_CODEC_HOST on loopback (127.0.0.1)")


def describe(settings: Settings) -> str:
    """For the dev banner: where the codec server is and which key encrypts (its id, never the key)."""
    codec = codec_from_settings(settings)
    if codec is None:
        return "off (no payload key: payloads are stored in clear)"
    access = "bearer token required" if settings.codec_token else "open, loopback only"
    where = codec_endpoint(settings) if settings.codec_port else "not served (TECHCONNECT_CODEC_PORT=0)"
    return f"{where} ({access}); payloads encrypted with key {codec.active_key_id!r}"


def codec_endpoint(settings: Settings) -> str:
    """The URL the Temporal UI calls (given to `temporal server start-dev --ui-codec-endpoint`)."""
    return f"http://{settings.codec_host}:{settings.codec_port}"


@contextlib.asynccontextmanager
async def serving(app: Starlette, host: str, port: int) -> AsyncIterator[str]:
    """Serve `app` on host:port inside the running event loop (uvicorn); yields the base URL.

    The socket is bound here, so a port in use is a clear error, not uvicorn's sys.exit.
    """
    from config import http_server

    sock = http_server.bind(host, port, lambda exc: SystemExit(
        f"codec server: cannot listen on {host}:{port}: {exc} (set TECHCONNECT_CODEC_PORT, 0 turns it off)"))
    async with http_server.serving_on(app, sock, "codec server", lifespan="off"):
        yield f"http://{host}:{sock.getsockname()[1]}"
