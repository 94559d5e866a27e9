"""No test takes a literal date for "the future" (issue 11).

A test that runs against a clock (a Temporal server, time-skipping or dev, the machine's clock,
or a helper that reads one) takes its dates from that clock: the server's now, or the next such
day after it (tests/calendar_positions.py). A literal "the future" expires: a scenario that moves a
time-skipping server to 26 March 2027 with `sleep_until` does nothing once the real date is later,
and the test fails from then on. `scan` reads every tests/*.py (its syntax tree, not its text)
and reports:

1. "future": in a test that runs against a clock, and in every helper, constant, decorator and
   fixture it uses (across test modules, through `from tests.x import y`), a date literal later
   than today: `date(2027, 3, 26)`, `datetime(2027, 3, 26, 16, 30)`, an ISO date in a string
   ("2027-03-26", alone or inside a longer string: a date-time, a CSV row), one of those moved by
   a constant `timedelta` (`date(2026, 1, 1) + timedelta(days=800)`), or `.replace(year=2031)`.
2. "seam": in such a test, a date literal of any year (directly, through a variable of the test or
   a module constant) handed to what moves time or feeds a programme: `sleep_until`, `env.sleep`,
   `add_subscription`, `enrolment(...)`, a `period_start`, an `at=` or `now=` instant.
   Past literals too: there "2025" also means "N days ago", which changes with the run date; and
   this is what still catches the old New York/Easter scenarios once March 2027 has passed.
3. "local clock": anywhere in tests/, the machine's local calendar (`date.today()`,
   `datetime.today()`, `datetime.now()` without a time zone): near midnight it disagrees with the
   programme's time zone and with the server. A line may keep one with a comment
   `# local-clock: <why>` (where the code under test itself uses the local date).

What runs against a clock: a function whose body calls `now()`, `today()`, `get_current_time()`,
`sleep_until()`, `start_time_skipping()`, `start_dev_server()`, `time.time()`..., or whose
parameters are typed `Stack`, `WorkflowEnvironment`, `Client` or `WorkflowHandle`, or that takes a
fixture or uses a helper that runs against a clock.

Pure tests (no server, no clock: the calendar maths of tests/test_calendar.py, templates, parsers,
repositories given explicit instants) may keep literal dates: they answer the same on any day.
The ends of `date` (years 1 and 9999) are edge inputs, not "the future". This file does not scan
itself (its fixtures are the old tests it must catch).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.calendar_positions import (
    next_business_day,
    next_friday_before_easter_monday,
    next_friday_before_summer_time,
    next_plain_friday,
)
from tests.clock import TEST_NOW, move_to_requested_now, requested_now

TESTS = Path(__file__).resolve().parent
PARIS, NEW_YORK = ZoneInfo("Europe/Paris"), ZoneInfo("America/New_York")

CLOCK_CALLS = frozenset({"now", "today", "utcnow", "get_current_time", "sleep_until", "start_time_skipping",
                         "start_dev_server", "start_local", "move_to_requested_now"})
SERVER_TYPES = frozenset({"Stack", "WorkflowEnvironment", "Client", "WorkflowHandle"})
SEAM_CALLS = frozenset({"sleep_until", "sleep", "add_subscription", "subscribe", "enrolment", "enrolment_doc",
                        "begin", "started", "live_programme"})
SEAM_KEYWORDS = frozenset({"period_start", "at", "now"})  # a programme's start, the instant a thing happens
EDGE_YEARS = frozenset({1, 9999})
ISO_DATE = re.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})(?!\d)")
WAIVER = re.compile(r"#\s*local-clock:\s*\S")


@dataclass(frozen=True)
class Hit:
    path: str
    line: int
    kind: str  # future | seam | local clock
    unit: str
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line} ({self.unit}) {self.kind}: {self.what}"


@dataclass
class Unit:
    module: str
    name: str
    node: ast.AST
    fixture: bool = False
    params: list[str] = field(default_factory=list)


@dataclass
class Module:
    name: str
    path: str
    tree: ast.Module
    lines: list[str]
    units: dict[str, Unit] = field(default_factory=dict)
    imports: dict[str, tuple[str, str]] = field(default_factory=dict)  # local name -> (module, name)


# ------------------------------------------------------------------------------ literals
def _int(node: ast.AST) -> int | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _int(node.operand)
        return None if inner is None else -inner
    return None


def _callee(node: ast.Call) -> str:
    f = node.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def _constructed(node: ast.Call) -> date | None:
    """date(Y, M, D) / datetime(Y, M, D, ...) with constant arguments."""
    if _callee(node) not in ("date", "datetime"):
        return None
    parts: dict[str, int | None] = dict(zip(("year", "month", "day"), (_int(a) for a in node.args[:3]), strict=False))
    for kw in node.keywords:
        if kw.arg in ("year", "month", "day"):
            parts[kw.arg] = _int(kw.value)
    try:
        return date(parts["year"], parts["month"], parts["day"])  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError):
        return None


def _timedelta(node: ast.AST) -> timedelta | None:
    if not (isinstance(node, ast.Call) and _callee(node) == "timedelta"):
        return None
    units = ("days", "seconds", "microseconds", "milliseconds", "minutes", "hours", "weeks")
    values: dict[str, int] = {}
    for unit, arg in zip(units, node.args, strict=False):
        v = _int(arg)
        if v is None:
            return None
        values[unit] = v
    for kw in node.keywords:
        v = _int(kw.value)
        if kw.arg not in units or v is None:
            return None
        values[kw.arg] = v
    return timedelta(**values)


def literal_dates(node: ast.AST) -> Iterator[tuple[ast.AST, date]]:
    """Every date literal in `node` (see the module docstring), with the node that holds it.
    Docstrings are text, not values: skipped."""
    skip: set[int] = set()
    for n in ast.walk(node):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)) and n.body:
            first = n.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                skip.add(id(first.value))
    for n in ast.walk(node):
        if id(n) in skip:
            continue
        if isinstance(n, ast.BinOp) and isinstance(n.op, (ast.Add, ast.Sub)):
            base = _constructed(n.left) if isinstance(n.left, ast.Call) else None
            delta = _timedelta(n.right)
            if base is not None and delta is not None:
                at = datetime.combine(base, time())
                try:
                    yield n, (at + delta if isinstance(n.op, ast.Add) else at - delta).date()
                except OverflowError:
                    pass
                continue
        if isinstance(n, ast.Call):
            made = _constructed(n)
            if made is not None:
                yield n, made
            elif _callee(n) == "replace":
                year = next((_int(kw.value) for kw in n.keywords if kw.arg == "year"), None)
                if year is not None and 1 <= year <= 9999:
                    yield n, date(year, 1, 1)
        elif isinstance(n, ast.Constant) and isinstance(n.value, str):
            for m in ISO_DATE.finditer(n.value):
                try:
                    yield n, date(int(m[1]), int(m[2]), int(m[3]))
                except ValueError:
                    pass  # "2027-13-01": an invalid date, given on purpose to a parser


# ------------------------------------------------------------------------------ modules
def _is_fixture(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    for d in fn.decorator_list:
        target = d.func if isinstance(d, ast.Call) else d
        if (isinstance(target, ast.Attribute) and target.attr == "fixture") or \
                (isinstance(target, ast.Name) and target.id == "fixture"):
            return True
    return False


def parse(name: str, path: str, source: str) -> Module:
    tree = ast.parse(source)
    mod = Module(name=name, path=path, tree=tree, lines=source.splitlines())
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = stmt.args
            params = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
            mod.units[stmt.name] = Unit(name, stmt.name, stmt, _is_fixture(stmt), params)
        elif isinstance(stmt, ast.ClassDef):
            mod.units[stmt.name] = Unit(name, stmt.name, stmt)
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            for t in targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        mod.units[n.id] = Unit(name, n.id, stmt)
        elif isinstance(stmt, ast.ImportFrom) and stmt.module and stmt.module.startswith("tests"):
            for alias in stmt.names:
                mod.imports[alias.asname or alias.name] = (stmt.module, alias.name)
    return mod


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _reads_a_clock(unit: Unit) -> bool:
    for n in ast.walk(unit.node):
        if isinstance(n, ast.Call):
            name = _callee(n)
            if name in CLOCK_CALLS:
                return True
            f = n.func
            if name == "time" and isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) \
                    and f.value.id == "time":
                return True
        if isinstance(n, ast.arg) and n.annotation is not None and _names(n.annotation) & SERVER_TYPES:
            return True
        if isinstance(n, ast.Name) and n.id == "WorkflowEnvironment" and isinstance(n.ctx, ast.Load) \
                and not isinstance(unit.node, ast.ClassDef):
            return True
    return False


class Suite:
    """The test modules, their units (top-level functions, classes, constants) and what uses what."""

    def __init__(self, modules: list[Module]) -> None:
        self.modules = {m.name: m for m in modules}

    def resolve(self, module: str, name: str, depth: int = 0) -> Unit | None:
        mod = self.modules.get(module)
        if mod is None or depth > 5:
            return None
        if name in mod.units:
            return mod.units[name]
        if name in mod.imports:
            return self.resolve(*mod.imports[name], depth=depth + 1)
        return None

    def uses(self, unit: Unit) -> list[Unit]:
        found = []
        for name in _names(unit.node):
            if name == unit.name:
                continue
            target = self.resolve(unit.module, name)
            if target is not None and target is not unit:
                found.append(target)
        return found

    def fixture(self, module: str, name: str) -> Unit | None:
        for where in (module, "tests.conftest"):
            target = self.resolve(where, name)
            if target is not None and target.fixture:
                return target
        return None

    def live(self) -> set[int]:
        """Units that run against a clock (ids of Unit objects)."""
        units = [u for m in self.modules.values() for u in m.units.values()]
        live = {id(u) for u in units if _reads_a_clock(u)}
        changed = True
        while changed:
            changed = False
            for u in units:
                if id(u) in live:
                    continue
                deps = self.uses(u) + [f for p in u.params if (f := self.fixture(u.module, p)) is not None]
                if any(id(d) in live for d in deps):
                    live.add(id(u))
                    changed = True
        return live

    def reached(self, live: set[int]) -> list[Unit]:
        """Live units and everything they use, transitively."""
        units = {id(u): u for m in self.modules.values() for u in m.units.values()}
        seen: set[int] = set()
        todo = [units[i] for i in live]
        while todo:
            u = todo.pop()
            if id(u) in seen:
                continue
            seen.add(id(u))
            todo += self.uses(u) + [f for p in u.params if (f := self.fixture(u.module, p)) is not None]
        return [units[i] for i in seen]

    def constant_dates(self, module: str, node: ast.AST, local: dict[str, list[ast.AST]] | None = None,
                       depth: int = 0) -> Iterator[date]:
        """Date literals in `node`, through the names it uses: the function's own assignments
        (`local`: `monday = date(2027, 3, 15)`) and the constants of test modules."""
        for _, d in literal_dates(node):
            yield d
        if depth < 3:
            for name in _names(node):
                for value in (local or {}).get(name, []):
                    yield from self.constant_dates(module, value, local, depth + 1)
                target = self.resolve(module, name)
                if target is not None and isinstance(target.node, (ast.Assign, ast.AnnAssign)) \
                        and target.node.value is not None:
                    yield from self.constant_dates(target.module, target.node.value, None, depth + 1)


def _assignments(node: ast.AST) -> dict[str, list[ast.AST]]:
    """name -> the values assigned to it inside `node` (a function): plain and tuple assignments."""
    found: dict[str, list[ast.AST]] = {}
    for n in ast.walk(node):
        if isinstance(n, (ast.Assign, ast.AnnAssign, ast.NamedExpr)) and n.value is not None:
            targets = n.targets if isinstance(n, ast.Assign) else [n.target]
            for t in targets:
                if isinstance(t, ast.Name):
                    found.setdefault(t.id, []).append(n.value)
                elif isinstance(t, ast.Tuple) and isinstance(n.value, ast.Tuple) and len(t.elts) == len(n.value.elts):
                    for name, value in zip(t.elts, n.value.elts, strict=True):
                        if isinstance(name, ast.Name):
                            found.setdefault(name.id, []).append(value)
    return found


def _seam_arguments(node: ast.AST) -> Iterator[ast.AST]:
    for n in ast.walk(node):
        if isinstance(n, ast.Call):
            if _callee(n) in SEAM_CALLS:
                yield from n.args
                yield from (kw.value for kw in n.keywords)
            else:
                yield from (kw.value for kw in n.keywords if kw.arg in SEAM_KEYWORDS)
        elif isinstance(n, ast.Dict):
            yield from (v for k, v in zip(n.keys, n.values, strict=True)
                        if isinstance(k, ast.Constant) and k.value in SEAM_KEYWORDS)


def _local_clock(node: ast.Call) -> str | None:
    f = node.func
    if not (isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name)):
        return None
    owner, name = f.value.id, f.attr
    if owner in ("date", "datetime") and name == "today":
        return f"{owner}.today()"
    if owner == "datetime" and name == "now" and not node.args and not any(k.arg == "tz" for k in node.keywords):
        return "datetime.now() without a time zone"
    return None


def scan(sources: dict[str, str], today: date) -> list[Hit]:
    """`sources`: module name ("tests.test_x") -> source text. The hits, in file order."""
    modules = [parse(name, name.replace(".", "/") + ".py", text) for name, text in sources.items()]
    suite = Suite(modules)
    live = suite.live()
    hits: set[Hit] = set()
    for u in suite.reached(live):
        mod = suite.modules[u.module]
        for n, d in literal_dates(u.node):
            if d > today and d.year not in EDGE_YEARS:
                hits.add(Hit(mod.path, getattr(n, "lineno", 0), "future", u.name,
                             f"{d.isoformat()} is later than today ({today.isoformat()}) in a test that runs "
                             "against a clock: compute it from the clock (tests/calendar_positions.py)"))
        if id(u) in live:
            local = _assignments(u.node)
            for arg in _seam_arguments(u.node):
                found = sorted({d for d in suite.constant_dates(u.module, arg, local) if d.year not in EDGE_YEARS})
                if found:
                    hits.add(Hit(mod.path, getattr(arg, "lineno", 0), "seam", u.name,
                                 f"literal date(s) {[d.isoformat() for d in found]} handed to what moves time or "
                                 f"feeds a programme ({ast.unparse(arg)[:80]}): compute them from the server's now"))
    for mod in modules:
        for n in ast.walk(mod.tree):
            if isinstance(n, ast.Call) and (what := _local_clock(n)) is not None:
                line = mod.lines[n.lineno - 1] if n.lineno <= len(mod.lines) else ""
                if not WAIVER.search(line):
                    hits.add(Hit(mod.path, n.lineno, "local clock", "-",
                                 f"{what}: the machine's local calendar; use the server's now or a time zone"))
    return sorted(hits, key=lambda h: (h.path, h.line, h.kind))


def suite_sources() -> dict[str, str]:
    me = Path(__file__).resolve()
    return {"tests." + ".".join(p.relative_to(TESTS).with_suffix("").parts): p.read_text(encoding="utf-8")
            for p in sorted(TESTS.rglob("*.py")) if p.resolve() != me}


# ------------------------------------------------------------------------------ the check
def test_no_test_takes_a_literal_date_for_the_future() -> None:
    today = datetime.now(UTC).date() + timedelta(days=1)  # the latest "today" anywhere on Earth
    hits = scan(suite_sources(), today)
    assert not hits, "dates that depend on the day the tests run:\n" + "\n".join(map(str, hits))


# ---- the check catches what it must (fixtures: the tests as they were, and ways round it) --------------
OLD_SUPPORT_REQUEST = '''
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo
import pytest_asyncio
from tests.harness import Stack, add_subscription, enrolment, stack, start_time_skipping

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
UTC = ZoneInfo("UTC")


@pytest_asyncio.fixture
async def st(tmp_path, sqlite_url):
    env = await start_time_skipping()
    async with stack(env, sqlite_url, tmp_path) as s:
        yield s


async def live_programme(st: Stack, customer="acme", *, tz=PARIS, country="FR", out_of_hours=None):
    today = (await st.now()).astimezone(tz).date()
    await add_subscription(st.sessions, customer, today - timedelta(days=30), today + timedelta(days=800))
    await st.start(enrolment(customer, today, calendar={"timezone": str(tz), "country": country}))
    return await st.wait_enrolled(customer)


def at_local(d, hh, mm, tz=PARIS):
    return datetime.combine(d, time(hh, mm), tz).astimezone(UTC)


async def test_c12_friday_before_easter_monday_is_due_tuesday_across_dst(st: Stack) -> None:
    await st.sleep_until(at_local(date(2027, 3, 26), 10, 0))
    await live_programme(st)
    number, h = await file(st, at=at_local(date(2027, 3, 26), 16, 30))
    assert number == "TC-ACME-2027-0001"
    s = await status(h)
    assert s.first_response_deadline == datetime(2027, 3, 30, 7, 30, tzinfo=UTC)


async def test_c12_new_york_clock_across_us_dst_warns_and_escalates_at_the_local_hour(st: Stack) -> None:
    await st.sleep_until(at_local(date(2027, 3, 12), 10, 0, NEW_YORK))
    await live_programme(st, "globex", tz=NEW_YORK, country="US")
    s = await status(h)
    assert s.first_response_deadline == datetime(2027, 3, 15, 13, 30, tzinfo=UTC)
    monday = date(2027, 3, 15)
    await st.sleep_until(at_local(monday, 9, 14, NEW_YORK))
'''


def _lines(hits: list[Hit], kind: str) -> set[int]:
    return {h.line for h in hits if h.kind == kind}


def test_the_old_new_york_and_easter_tests_are_caught_before_and_after_their_dates() -> None:
    source = {"tests.test_support_request": OLD_SUPPORT_REQUEST}
    lines = OLD_SUPPORT_REQUEST.splitlines()
    sleeps = {i for i, text in enumerate(lines, 1) if "sleep_until(at_local(date(2027" in text}
    nyday = next(i for i, text in enumerate(lines, 1) if "monday = date(2027, 3, 15)" in text)
    deadlines = {i for i, text in enumerate(lines, 1) if "datetime(2027, 3" in text}
    assert len(sleeps) == 2 and len(deadlines) == 2

    # When they were written (December 2026): every March 2027 literal is "the future"...
    before = scan(source, date(2026, 12, 2))
    assert sleeps | deadlines | {nyday} <= _lines(before, "future"), "\n".join(map(str, before))
    # ...and the ones moving the server's clock are seams, whatever the date, through a variable too.
    monday_sleep = next(i for i, text in enumerate(lines, 1) if "sleep_until(at_local(monday" in text)
    assert sleeps | {monday_sleep} <= _lines(before, "seam")
    # In 2031 they are past; the seam still catches the scenarios that depend on the date.
    after = scan(source, date(2031, 1, 15))
    assert not _lines(after, "future") and sleeps | {monday_sleep} <= _lines(after, "seam"), "\n".join(map(str, after))


def test_pure_calendar_tests_keep_their_literal_dates() -> None:
    pure = '''
from datetime import date, datetime
from domain.calendar import add_business_days

def test_friday_plus_one_skips_easter_monday():
    assert add_business_days(date(2027, 3, 26), 1, FR_CAL, FR) == date(2027, 3, 30)

def test_deadline():
    assert business_deadline(datetime(2031, 1, 8, 16, 30), 60) == datetime(2031, 1, 13, 9, 30)
'''
    assert scan({"tests.test_pure": pure}, date(2026, 12, 2)) == []


def test_ways_round_the_check_are_caught() -> None:
    helpers = '''
from datetime import date

FAR = date(2030, 6, 1)

def kickoff_payload():
    return {"meeting_at": "2030-01-10T10:00:00+01:00"}
'''
    gaming = '''
from datetime import date, datetime, timedelta
from tests.helpers_x import FAR, kickoff_payload
from tests.harness import Stack

async def test_shifted(st: Stack) -> None:
    await st.sleep_until(datetime.combine(date(2026, 1, 1) + timedelta(days=800), time(10)))

async def test_imported_helper(st: Stack) -> None:
    await h.execute_update("schedule_kickoff", kickoff_payload())

async def test_constant_via_name(st: Stack) -> None:
    await add_subscription(st.sessions, "acme", FAR - timedelta(days=900), FAR)

async def test_year_bumped(st: Stack) -> None:
    at = (await st.now()).replace(year=2031)

def test_local_calendar() -> None:
    first = date.today()
    assert first <= datetime.now().date()
'''
    hits = scan({"tests.helpers_x": helpers, "tests.test_gaming": gaming}, date(2026, 12, 2))
    found = {(h.path, h.unit, h.kind) for h in hits}
    assert ("tests/test_gaming.py", "test_shifted", "future") in found  # 2028-03-11
    assert ("tests/test_gaming.py", "test_shifted", "seam") in found
    assert ("tests/helpers_x.py", "kickoff_payload", "future") in found  # used by a test on a server
    assert ("tests/helpers_x.py", "FAR", "future") in found
    assert ("tests/test_gaming.py", "test_constant_via_name", "seam") in found
    assert ("tests/test_gaming.py", "test_year_bumped", "future") in found
    assert len([h for h in hits if h.kind == "local clock"]) == 2, hits
    # A waiver names its reason, on the line.
    waived = gaming.replace("datetime.now().date()", "datetime.now().date()  # local-clock: like the portal")
    hits = scan({"tests.helpers_x": helpers, "tests.test_gaming": waived}, date(2026, 12, 2))
    assert len([h for h in hits if h.kind == "local clock"]) == 1, hits


# ---- the seam and the calendar positions (tests/clock.py, tests/calendar_positions.py) --------------
def test_the_seam_reads_a_date_or_an_instant() -> None:
    assert requested_now("") is None
    assert requested_now("2031-01-15") == datetime(2031, 1, 15, tzinfo=UTC)
    assert requested_now("2027-06-15T14:00:00+02:00") == datetime(2027, 6, 15, 12, tzinfo=UTC)
    assert requested_now("2027-06-15T14:00") == datetime(2027, 6, 15, 14, tzinfo=UTC)
    with pytest.raises(ValueError, match="TECHCONNECT_TEST_NOW='next tuesday' is neither a date"):
        requested_now("next tuesday")


async def test_the_seam_moves_a_server_forward_never_back(monkeypatch: pytest.MonkeyPatch) -> None:
    class Server:  # what move_to_requested_now uses of a time-skipping WorkflowEnvironment
        def __init__(self) -> None:
            self.at = datetime(2026, 12, 2, 12, tzinfo=UTC)

        async def get_current_time(self) -> datetime:
            return self.at

        async def sleep(self, duration: timedelta) -> None:
            self.at += duration

    server = Server()
    monkeypatch.delenv(TEST_NOW, raising=False)
    assert await move_to_requested_now(server) == datetime(2026, 12, 2, 12, tzinfo=UTC)  # type: ignore[arg-type]
    monkeypatch.setenv(TEST_NOW, "2031-01-15")
    assert await move_to_requested_now(server) == datetime(2031, 1, 15, tzinfo=UTC)  # type: ignore[arg-type]
    server.at += timedelta(seconds=5)  # a second call (the harness and a test both asking) changes nothing
    assert await move_to_requested_now(server) == datetime(2031, 1, 15, 0, 0, 5, tzinfo=UTC)  # type: ignore[arg-type]
    monkeypatch.setenv(TEST_NOW, "2020-01-01")  # before the real clock, where every server starts
    with pytest.raises(RuntimeError, match="only moves forward"):
        await move_to_requested_now(server)  # type: ignore[arg-type]


def test_calendar_positions_follow_the_given_now() -> None:
    december_2026 = datetime(2026, 12, 2, 12, tzinfo=UTC)
    # 2027: Easter Sunday is also the day Paris moves to summer time.
    assert next_friday_before_easter_monday(december_2026, PARIS, "FR") == date(2027, 3, 26)
    assert next_friday_before_summer_time(december_2026, PARIS) == date(2027, 3, 26)
    assert next_business_day(date(2027, 3, 26), "FR") == date(2027, 3, 30)
    assert next_friday_before_summer_time(december_2026, NEW_YORK) == date(2027, 3, 12)
    january_2031 = datetime(2031, 1, 15, tzinfo=UTC)
    assert next_friday_before_easter_monday(january_2031, PARIS, "FR") == date(2031, 4, 11)
    assert next_friday_before_summer_time(january_2031, PARIS) == date(2031, 3, 28)
    assert next_business_day(date(2031, 3, 28), "FR") == date(2031, 3, 31)
    assert next_friday_before_summer_time(january_2031, NEW_YORK) == date(2031, 3, 7)
    # On the Friday itself, once 10:00 local has passed, the scenario moves to the next year.
    assert next_friday_before_easter_monday(datetime(2027, 3, 26, 9, 59, tzinfo=UTC), PARIS, "FR") == date(2028, 4, 14)
    assert next_friday_before_summer_time(datetime(2027, 3, 12, 14, 59, tzinfo=UTC), NEW_YORK) == date(2027, 3, 12)
    assert next_friday_before_summer_time(datetime(2027, 3, 12, 15, 1, tzinfo=UTC), NEW_YORK) == date(2028, 3, 10)
    # A plain Friday: neither it nor the Monday after is a holiday (Friday 1 May 2026, Easter Monday 2026).
    assert next_plain_friday(datetime(2026, 4, 28, tzinfo=UTC), PARIS, "FR") == date(2026, 5, 15)
    assert next_plain_friday(datetime(2026, 3, 30, tzinfo=UTC), PARIS, "FR") == date(2026, 4, 10)
