"""The TechConnect portal: one FastAPI app, server-rendered pages and a JSON API under /api.

`create_app(settings)` builds everything from settings (`techconnect portal`, `make run`);
tests and the dev stack may hand in the session factory, the Temporal client and the
mailer they already have.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.client import Client
from temporalio.service import RPCError

from activities.mail import MailActivities
from activities.mailer import SmtpMailer
from activities.templating import TEMPLATES_DIR, make_template_environment
from config.settings import Settings
from portal.auth import current_principal
from portal.input_guard import RefuseNul
from portal.rendering import render
from portal.routers import account, api, desk, inbox, operations, workspace
from portal.security import portal_secret
from portal.state import PortalState
from storage.db import SessionFactory, make_engine, make_session_factory

log = logging.getLogger("techconnect.portal")
STATIC_DIR: Path = TEMPLATES_DIR / "portal" / "static"

MESSAGES = {
    403: ("Not allowed", "Your role does not allow this."),
    404: ("Not found", "There is nothing here, or it is not yours to see."),
    405: ("Not allowed", "This address does not take that kind of request."),
    429: ("Too many attempts", "Wait a few minutes and try again."),
    503: ("Temporarily unavailable", "A service the portal needs does not answer; try again in a moment."),
}


def _is_api(request: Request) -> bool:
    return request.url.path == "/api" or request.url.path.startswith("/api/")


def create_app(settings: Settings | None = None, *, sessions: SessionFactory | None = None,
               client: Client | None = None, mailer: SmtpMailer | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = None
        factory = sessions
        if factory is None:
            from storage.migrate import upgrade

            settings.data_dir.mkdir(parents=True, exist_ok=True)
            await upgrade(settings.effective_database_url)
            engine = make_engine(settings.effective_database_url)
            factory = make_session_factory(engine)
        mail = MailActivities(factory, mailer or SmtpMailer.from_settings(settings), make_template_environment(),
                              settings.policy.sender)
        app.state.portal = PortalState(settings=settings, sessions=factory, secret=portal_secret(settings),
                                       mail=mail, client=client)
        try:
            yield
        finally:
            if engine is not None:
                await engine.dispose()

    app = FastAPI(
        title="TechConnect portal API",
        version="1",
        description="Customer workspaces, support requests, the Technical Lead's inbox and programme operations "
                    "of the OpenText TechConnect service. Authenticate with `Authorization: Bearer <token>`.",
        lifespan=lifespan,
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    for audience in (account, workspace, inbox, desk, operations, api):
        app.include_router(audience.router)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    app.add_middleware(RefuseNul)  # 422 for U+0000 anywhere: PostgreSQL cannot store it

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = dict(exc.headers or {})
        if _is_api(request):
            body = exc.detail if isinstance(exc.detail, dict) else {"detail": exc.detail}
            return JSONResponse(body, status_code=exc.status_code, headers=headers)
        if exc.status_code == 401:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
        await current_principal(request)  # the error page shows who is signed in
        heading, message = MESSAGES.get(exc.status_code, ("Something went wrong", str(exc.detail)))
        if exc.status_code in (403, 503) and isinstance(exc.detail, str):
            message = exc.detail[:1].upper() + exc.detail[1:] + "."
        response = render(request, "error.html.j2", {"status": exc.status_code, "heading": heading,
                                                     "message": message}, status=exc.status_code, title=heading)
        response.headers.update(headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        return JSONResponse({"detail": jsonable_encoder(exc.errors())}, status_code=422) if _is_api(request) else \
            await http_error(request, StarletteHTTPException(404))

    @app.exception_handler(RPCError)
    async def temporal_error(request: Request, exc: RPCError) -> Response:
        log.warning("Temporal refused a portal request: %s", exc)
        return await http_error(request, StarletteHTTPException(503, f"Temporal did not answer: {exc.message}"))

    return app



def http_routes(app: FastAPI) -> list[tuple[str, frozenset[str], APIRoute]]:
    """Every HTTP route as (path, methods, route), through included routers: what tests enumerate,
    so that a new route cannot escape the authentication and tenant checks."""
    found: list[tuple[str, frozenset[str], APIRoute]] = []

    def walk(routes: list[Any], prefix: str) -> None:
        for route in routes:
            original = getattr(route, "original_router", None)  # FastAPI >= 0.130 keeps included routers whole
            if original is not None:
                walk(list(original.routes), prefix + str(getattr(route.include_context, "prefix", "")))
            elif isinstance(route, APIRoute):
                found.append((prefix + route.path, frozenset(route.methods or ()), route))

    walk(list(app.routes), "")
    return found


__all__ = ["create_app", "http_routes"]
