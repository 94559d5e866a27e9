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

from datetime import UTC, date, datetime, timedelta
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
from tests.date_literals import (
    TESTS,
    Hit,
    scan,
)

PARIS, NEW_YORK = ZoneInfo("Europe/Paris"), ZoneInfo("America/New_York")


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
