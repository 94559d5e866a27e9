"""Schemathesis over the portal's OpenAPI (issue 5): every /api route, generated inputs, no 5xx.

Two runs, authenticated with the bearer token of an administrator (the role that may call
nearly every route, so generated payloads reach the handlers rather than stop at a role check):

- **live**: the portal served by uvicorn against a real Temporal dev server, the real worker,
  PostgreSQL (SQLite outside CI when none answers) and the SMTP sink; a programme and a request
  exist, the spec the run reads gives the real customer and a real step as path examples, and
  generated path parameters are mostly swapped for their real IDs (and real step names), so the
  Temporal-backed routes (status, steps, inbox, requests, approvals) really reach Temporal with
  generated payloads;
- **Temporal down**: the same app with nothing listening at TEMPORAL_ADDRESS: routes that need
  Temporal answer 503 with a message, the database-only routes keep answering.

Every call is counted by operation, generation mode (positive: inputs the schema allows;
negative: inputs it forbids) and status code. After each run a summary test asserts what the
run shows: no 5xx at all (live) or only clean 503s (down), a stated share of the calls whose
input the schema allows got past validation (neither 400 nor 422), every operation was called
and (loosely specified bodies aside, see SCHEMA_LOOSER_THAN_MODEL) reached by a schema-valid call,
and the live run's workflows answered; the counts are printed under "measured figures".

Examples are bounded (SCHEMATHESIS_EXAMPLES per operation, default 8) so both runs take about
a minute. The stack runs on an event loop in a background thread: schemathesis drives the API
over HTTP from the (synchronous) test, as a client would.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import threading
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from domain.request import NewRequest
from portal.app import create_app
from portal.server import bound_port, serving
from starter.requests import open_request
from storage import users as users_repo
from storage.credentials import digest, new_api_token
from storage.db import SessionFactory
from storage.users import Role
from tests.clock import today_in
from tests.conftest import free_port
from tests.harness import Stack, add_subscription, enrolment, stack_on_server
from tests.portal_fixtures import password_hash

T = TypeVar("T")
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "8"))
CUSTOMER = "schema-co"
STEPS = ["schedule_kickoff", "complete_kickoff", "submit_site_inventory", "add_findings", "give_non_renewal_notice",
         "record_billable_extra", "schedule_call", "hold_call", "approve_report", "not_a_step"]


class BackgroundLoop:
    """An event loop in a thread: the stack lives there while the synchronous test calls the API."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="portal-stack", daemon=True)
        self.thread.start()
        self.exit = contextlib.AsyncExitStack()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def enter(self, cm: contextlib.AbstractAsyncContextManager[T]) -> T:
        return self.run(self.exit.enter_async_context(cm))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.run(self.exit.aclose(), timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@dataclass
class Portal:
    url: str
    token: str
    tracking_number: str | None = None

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def _admin_token(sessions: SessionFactory) -> str:
    async with sessions() as s, s.begin():
        await users_repo.add_user(s, email="ada@techconnect.example", name="Ada Admin", role=Role.admin,
                                  password_hash=password_hash())
        user = await users_repo.get_user_by_email(s, "ada@techconnect.example")
        assert user is not None
        token, prefix = new_api_token()
        await users_repo.create_api_token(s, user_id=user.id, name="schemathesis", token_hash=digest(token),
                                          prefix=prefix)
    return token


@pytest.fixture(scope="module")
def live(shared_db_module: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    """Dev server + worker + portal on uvicorn, with a programme and a request to aim at."""
    tmp = tmp_path_factory.mktemp("schemathesis-live")
    bg = BackgroundLoop()
    try:
        st_: Stack = bg.enter(stack_on_server(tmp, shared_db_module))

        async def seed() -> tuple[str, str]:
            today = today_in()
            await add_subscription(st_.sessions, CUSTOMER, today - timedelta(days=30), today + timedelta(days=900))
            await st_.start(enrolment(CUSTOMER, today, calendar={"timezone": "Europe/Paris", "country": "FR",
                                                                 "out_of_hours_agreement_ref": "OOH-1"}))
            await st_.wait_enrolled(CUSTOMER)
            token = await _admin_token(st_.sessions)
            settings_ = st_.settings.model_copy(update={"task_queue": st_.task_queue})
            number = await open_request(st_.client, settings_, NewRequest(
                customer_id=CUSTOMER, kind="support", priority="high", summary="Search is slow", filed_by="carol",
                channel="portal"), sessions=st_.sessions)
            return token, number

        token, number = bg.run(seed())
        app = create_app(st_.settings.model_copy(update={"task_queue": st_.task_queue,
                                                         "portal_secret": "schemathesis-" + "x" * 20}),
                         sessions=st_.sessions, client=st_.client)
        server = bg.enter(serving(app))
        KNOWN["tracking_number"] = number
        yield Portal(f"http://127.0.0.1:{bound_port(server)}", token, number)
    finally:
        bg.close()


@pytest.fixture(scope="module")
def temporal_down(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    """The portal with nothing listening at TEMPORAL_ADDRESS (SQLite, no worker)."""
    from config.settings import Settings, TemporalSettings
    from storage.db import make_engine, make_session_factory
    from storage.migrate import upgrade

    tmp = tmp_path_factory.mktemp("schemathesis-down")
    url = f"sqlite+aiosqlite:///{tmp / 'techconnect.db'}"
    bg = BackgroundLoop()
    try:
        bg.run(upgrade(url))
        engine = make_engine(url)
        sessions = make_session_factory(engine)

        async def seed() -> str:
            today = today_in()
            await add_subscription(sessions, CUSTOMER, today - timedelta(days=30), today + timedelta(days=900))
            return await _admin_token(sessions)

        token = bg.run(seed())
        app = create_app(Settings(data_dir=tmp, database_url=url, portal_secret="schemathesis-" + "y" * 20,
                                  temporal=TemporalSettings(address=f"127.0.0.1:{free_port()}")),
                         sessions=sessions)
        server = bg.enter(serving(app))
        yield Portal(f"http://127.0.0.1:{bound_port(server)}", token)
        bg.run(engine.dispose())
    finally:
        bg.close()


@pytest.fixture(scope="module")
def shared_db_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`shared_db` of tests/conftest.py for a whole module (the live stack is built once)."""
    import uuid

    from testing.databases import PG_ADMIN_DSN, pg_admin, pg_url

    name = f"tc_schema_{uuid.uuid4().hex[:10]}"
    try:
        asyncio.run(pg_admin(f'CREATE DATABASE "{name}"'))
    except (TimeoutError, OSError) as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {PG_ADMIN_DSN} is unreachable in CI: {exc}")
        yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('schemathesis-db') / 'techconnect.db'}"
        return
    try:
        yield pg_url(name)
    finally:
        asyncio.run(pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _openapi() -> dict[str, Any]:
    """The portal's OpenAPI document, as /api/openapi.json serves it (routes only: nothing runs)."""
    from config.settings import Settings

    return create_app(Settings(portal_secret="schema-only-" + "z" * 20)).openapi()


def _with_real_examples(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec for the live run: the real customer and a real step as path examples, which the
    examples and coverage phases use (the hook below steers the fuzzing phase)."""
    spec = copy.deepcopy(spec)
    for operations in spec["paths"].values():
        for operation in operations.values():
            for param in operation.get("parameters", []):
                if param["in"] == "path" and param["name"] in ("customer_id", "step"):
                    param["example"] = CUSTOMER if param["name"] == "customer_id" else "schedule_kickoff"
    return spec


SPEC = _openapi()
SPEC_OPERATIONS = {f"{method.upper()} {path}" for path, ops in SPEC["paths"].items() for method in ops}
live_api = schemathesis.openapi.from_dict(_with_real_examples(SPEC))
down_api = schemathesis.openapi.from_dict(SPEC)
KNOWN: dict[str, str] = {}  # path parameter -> a real value, filled by the live fixture

# Each run's calls: (operation, generation mode, status code).
CALLS: dict[str, list[tuple[str, str, int]]] = {"live": [], "down": []}
REFUSED_BY_VALIDATION = {400, 422}
# Answered before any handler code runs: a mangled Authorization header, a method the route lacks.
NOT_A_HANDLER = REFUSED_BY_VALIDATION | {401, 405}
# Operations whose OpenAPI allows inputs the API refuses, so that few generated calls pass validation:
# - the enrolment's `calendar.day_start`/`day_end` are `format: time` in the spec (which allows a UTC
#   offset the model refuses) and `annual_fee.amount` is any string (the model wants a decimal);
# - a step's payload is the model the `step` in the path chooses: the spec can only say "an object".
SCHEMA_LOOSER_THAN_MODEL = {"POST /api/programmes", "POST /api/programmes/{customer_id}/steps/{step}"}
# Routes that send a workflow an Update: 200 (done) or 409 (refused by a rule) is the workflow's answer.
UPDATE_ROUTES = ["POST /api/programmes/{customer_id}/steps/{step}",
                 "POST /api/customers/{customer_id}/requests/{tracking_number}/accept-resolution",
                 "POST /api/customers/{customer_id}/requests/{tracking_number}/approve-dispatch"]
# The share of schema-valid calls to the other operations that must get past validation. Measured:
# 93-100 %; the rest are strings with U+0000, which the spec allows and the portal refuses (422).
MIN_PAST_VALIDATION = 0.8


def record(run: str, case: Any, status: int) -> None:
    meta = getattr(case, "meta", None)
    mode = meta.generation.mode.value if meta is not None else "unknown"
    # The operation as the spec declares it (a coverage case may send another method: 405).
    CALLS[run].append((f"{case.operation.method.upper()} {case.operation.path}", mode, status))


@live_api.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
    """Mostly aim at what exists (the programme, its request, a real step), so the generated payloads
    reach Temporal instead of stopping at a 404. The real values come first: Hypothesis draws the first
    element of `sampled_from` more often than the others."""
    if not path_parameters:
        return st.just(path_parameters)
    real = dict(path_parameters)
    if "customer_id" in real:
        real["customer_id"] = CUSTOMER
    if "tracking_number" in real and KNOWN.get("tracking_number"):
        real["tracking_number"] = KNOWN["tracking_number"]
    if "step" in real:
        return st.sampled_from(STEPS).flatmap(lambda s: st.sampled_from([{**real, "step": s}, path_parameters]))
    return st.sampled_from([real, path_parameters])


BOUNDED = settings(max_examples=EXAMPLES, deadline=None, derandomize=os.environ.get("SCHEMATHESIS_RANDOM") != "1",
                   database=None,
                   suppress_health_check=list(HealthCheck))


@live_api.parametrize()
@BOUNDED
# Schemathesis's own negative path mutations draw from `random` (its code, not this test's).
@pytest.mark.filterwarnings("ignore:Do not use the `random` module:hypothesis.errors.HypothesisDeprecationWarning")
def test_no_route_answers_5xx_with_temporal_and_the_worker_up(case: Any, live: Portal) -> None:
    response = case.call(base_url=live.url, headers=live.auth, timeout=60)
    record("live", case, response.status_code)  # before the check, so that the summary counts a 5xx too
    case.validate_response(response, checks=[not_a_server_error], headers=live.auth,
                           transport_kwargs={"base_url": live.url, "headers": live.auth, "timeout": 60})


@down_api.parametrize()
@BOUNDED
def test_no_route_answers_5xx_other_than_a_clean_503_when_temporal_is_down(case: Any, temporal_down: Portal) -> None:
    response = case.call(base_url=temporal_down.url, headers=temporal_down.auth, timeout=60)
    record("down", case, response.status_code)
    if response.status_code >= 500:
        # The only server error allowed: Temporal unavailable, said so (never a bare 500).
        assert response.status_code == 503, (case.method, case.formatted_path, response.status_code, response.text)
        assert "Temporal" in response.json()["detail"], response.text


def _ran(request: pytest.FixtureRequest, test: Callable[..., Any]) -> list[tuple[str, str, int]]:
    """The calls of one run, or a skip when its tests were not selected (`-k`)."""
    if not any(getattr(item, "originalname", None) == test.__name__ for item in request.session.items):
        pytest.skip(f"{test.__name__} was not selected: nothing to sum up")
    return CALLS["live" if test is test_no_route_answers_5xx_with_temporal_and_the_worker_up else "down"]


def counts(calls: list[tuple[str, str, int]]) -> str:
    def line(selected: list[tuple[str, str, int]]) -> str:
        by_code = Counter(code for _op, _mode, code in selected)
        return ", ".join(f"{code}: {n}" for code, n in sorted(by_code.items())) or "none"

    positive = [c for c in calls if c[1] == "positive"]
    negative = [c for c in calls if c[1] != "positive"]
    return (f"{len(calls)} calls [{line(calls)}]; schema-valid inputs {len(positive)} [{line(positive)}]; "
            f"schema-invalid inputs {len(negative)} [{line(negative)}]")


def past_validation(calls: list[tuple[str, str, int]]) -> tuple[int, int]:
    """(schema-valid calls not answered 400/422, schema-valid calls), the known loose schemas aside."""
    positive = [code for op, mode, code in calls if mode == "positive" and op not in SCHEMA_LOOSER_THAN_MODEL]
    return sum(code not in REFUSED_BY_VALIDATION for code in positive), len(positive)


def check_past_validation(calls: list[tuple[str, str, int]], summary: str) -> str:
    passed, valid = past_validation(calls)
    assert valid and passed / valid >= MIN_PAST_VALIDATION, (
        f"only {passed} of {valid} schema-valid calls got past validation (< {MIN_PAST_VALIDATION:.0%}; "
        f"{', '.join(sorted(SCHEMA_LOOSER_THAN_MODEL))} not counted): {summary}")
    return f"{passed}/{valid} ({passed / valid:.0%}) schema-valid calls got past validation"


def unreached(calls: list[tuple[str, str, int]]) -> list[str]:
    """Operations of which no schema-valid call reached the handler (the known loose schemas aside)."""
    operations = {op for op, _mode, _code in calls}
    reached = {op for op, mode, code in calls if mode == "positive" and code not in NOT_A_HANDLER}
    return sorted(operations - reached - SCHEMA_LOOSER_THAN_MODEL)


def every_operation_called(request: pytest.FixtureRequest, report_figure: Any, test: Callable[..., Any],
                           run: str) -> tuple[list[tuple[str, str, int]], str]:
    """The calls of one run and their summary (a measured figure), once every operation was called."""
    calls = _ran(request, test)
    summary = counts(calls)
    report_figure(f"schemathesis ({run})", summary)
    assert {op for op, _m, _c in calls} == SPEC_OPERATIONS, f"not every operation was called: {summary}"
    return calls, summary


def test_the_live_run_got_past_validation_and_no_call_answered_5xx(
        request: pytest.FixtureRequest, report_figure: Any) -> None:
    calls, summary = every_operation_called(
        request, report_figure, test_no_route_answers_5xx_with_temporal_and_the_worker_up, "live")
    server_errors = [(op, code) for op, _mode, code in calls if code >= 500]
    assert not server_errors, f"{len(server_errors)} call(s) answered 5xx: {server_errors[:10]}; {summary}"
    report_figure("schemathesis (live) past validation", check_past_validation(calls, summary))
    assert not unreached(calls), f"no schema-valid call reached the handler of {unreached(calls)}: {summary}"
    # The Temporal-backed routes did their work: requests opened (a workflow started), the programme's
    # status queried, steps and request updates answered by the workflows (done, or refused by a rule: 409).
    by_op = Counter((op, code) for op, _mode, code in calls)
    assert by_op["POST /api/customers/{customer_id}/requests", 201] >= 1, f"no request was opened: {summary}"
    assert by_op["GET /api/programmes/{customer_id}", 200] >= 1, f"no programme status came back: {summary}"
    updates = {op: {code: n for (o, code), n in by_op.items() if o == op} for op in UPDATE_ROUTES}
    assert any(by_op[op, code] for op in UPDATE_ROUTES for code in (200, 409)), (
        f"no step or request update was answered by a workflow: {updates}")


def test_the_temporal_down_run_answered_clean_503s_and_kept_the_database_routes_up(
        request: pytest.FixtureRequest, report_figure: Any) -> None:
    calls, summary = every_operation_called(
        request, report_figure, test_no_route_answers_5xx_other_than_a_clean_503_when_temporal_is_down, "down")
    other_errors = [(op, code) for op, _mode, code in calls if code >= 500 and code != 503]
    assert not other_errors, f"{len(other_errors)} call(s) answered a 5xx other than 503: {other_errors[:10]}; " \
                             f"{summary}"
    report_figure("schemathesis (down) past validation", check_past_validation(calls, summary))
    # Both halves were exercised: routes that need Temporal said it is down, database-only routes answered.
    unavailable = {op for op, _mode, code in calls if code == 503}
    answered = {op for op, _mode, code in calls if 200 <= code < 300}
    assert unavailable, f"no call reached a route that needs Temporal: {summary}"
    assert {"GET /api/me", "GET /api/customers", "GET /api/programmes"} <= answered, (
        f"database-only routes that answered 2xx: {sorted(answered)}; {summary}")
    assert not unavailable & {"GET /api/me", "GET /api/customers", "GET /api/programmes", "GET /api/audit"}, (
        f"a database-only route answered 503: {sorted(unavailable)}")
