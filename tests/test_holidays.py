"""OT's published holiday lists (rule A1) and the deadlines computed from them (C5, C12), on SQLite and PostgreSQL:
seeding from the `holidays` package on first use, ops imports (CSV and ICS, all or nothing), the activity checking
the list's version on every call and using one version per call, the CLI and the ops page. The dates are computed
from today: the next ordinary Wednesday (no French public holiday that week from Tuesday to Thursday) some weeks
ahead."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import holidays as holidays_lib
import pytest
import pytest_asyncio
from sqlalchemy import event, func, select
from typer.testing import CliRunner, Result

from activities.calendar import CalendarActivities
from activities.holidays import DatabaseHolidays
from cli.app import app as cli_app
from config.settings import Settings
from domain.activities import BusinessDeadline, BusinessDeadlineRequest, DeadlineItem, DeadlineRequest
from domain.calendar import BusinessCalendar
from domain.holidays import (
    HolidayListError,
    PublishedHolidays,
    describe_list,
    parse_holiday_csv,
    parse_holiday_ics,
)
from portal import actions
from portal.app import create_app
from storage.db import SessionFactory
from storage.holiday_import import import_holiday_file
from storage.repositories import holidays as holiday_repo
from storage.tables import Base, HolidayListRow, HolidayRow, HolidayYearRow
from storage.users import Role
from testing.databases import migrated_sessions
from tests.offline_cli import offline_cli_environment
from tests.portal_fixtures import InProcess, UnreachableTemporal, add_staff, programme_status, seed_tenant, sign_in

PARIS = ZoneInfo("Europe/Paris")
FR = BusinessCalendar()  # Europe/Paris, FR, 09:00-17:00 Monday to Friday


def ordinary_wednesday() -> date:
    """A Wednesday 3 to 8 weeks ahead whose Tuesday, Wednesday and Thursday are French working days."""
    day = datetime.now(UTC).date() + timedelta(days=21)
    while True:
        day += timedelta(days=1)
        week = [day - timedelta(days=1), day, day + timedelta(days=1)]
        public = holidays_lib.country_holidays("FR", years=sorted({d.year for d in week}))
        if day.isoweekday() == 3 and not any(d in public for d in week):
            return day


WED = ordinary_wednesday()


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=PARIS)


def csv_of(days: dict[date, str]) -> str:
    return "date,name\n" + "".join(f"{d.isoformat()},{n}\n" for d, n in sorted(days.items()))


def package_year(year: int) -> dict[date, str]:
    return {d: str(n) for d, n in holidays_lib.country_holidays("FR", years=year).items()}


def ics_of(*events: str) -> str:
    return "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//OT//holidays//EN\r\n" + "".join(events) + "END:VCALENDAR\r\n"


def vevent(uid: str, start: str, summary: str | None, end: str | None = None) -> str:
    return ("BEGIN:VEVENT\r\n" f"UID:{uid}\r\n" f"DTSTART;VALUE=DATE:{start}\r\n"
            + (f"DTEND;VALUE=DATE:{end}\r\n" if end else "") + (f"SUMMARY:{summary}\r\n" if summary is not None else "")
            + "END:VEVENT\r\n")


async def snapshot(sessions: SessionFactory) -> list[list[tuple[Any, ...]]]:
    """Every row of the three tables, to show an import changed nothing."""
    tables: list[list[tuple[Any, ...]]] = []
    async with sessions() as s:
        for model in (HolidayListRow, HolidayYearRow, HolidayRow):
            table = Base.metadata.tables[model.__tablename__]
            stmt = select(*table.columns).order_by(*table.primary_key.columns)
            tables.append([tuple(r) for r in (await s.execute(stmt)).all()])
    return tables


# ---- the deadline skips a holiday OT published after the package's ----------------------------------------


@pytest.mark.rule("A1")
@pytest.mark.rule("C12")
async def test_a_published_holiday_counts_for_deadlines_computed_after_the_import_only(
        sessions: SessionFactory, tmp_path: Path) -> None:
    acts = CalendarActivities(DatabaseHolidays(sessions))
    request = BusinessDeadlineRequest(calendar=FR, start=at(WED - timedelta(days=1), 16, 30), minutes=60)

    before = await acts.business_deadline(request)
    # 30 minutes on Tuesday, 30 on Wednesday: the package has no holiday that week.
    assert before.deadline == at(WED, 9, 30)
    assert before.holiday_list == "OT list FR v1"  # the first use seeded the list
    async with sessions() as s:
        years = await holiday_repo.list_holiday_years(s, "FR")
    assert WED.year in [y.year for y in years]
    assert all(y.source.startswith("holidays package ") and y.updated_by == "first use" for y in years)

    # OT publishes WED as a holiday: the year's list is the package's days plus it.
    published = package_year(WED.year) | {WED: "OT company day"}
    path = tmp_path / "ot-fr.csv"
    path.write_text(csv_of(published))
    report = await import_holiday_file(path, "FR", sessions, by="ops@ot.example")
    assert report.version == 2 and report.years == [WED.year]

    after = await acts.business_deadline(request)
    assert after.deadline == at(WED + timedelta(days=1), 9, 30)  # Wednesday skipped: Thursday 09:30
    assert after.holiday_list == "OT list FR v2"
    assert before.deadline == at(WED, 9, 30)  # the one computed before is what history keeps

    # The default source (no database) is the package, as before: it knows nothing of OT's day.
    assert (await CalendarActivities().business_deadline(request)).deadline == at(WED, 9, 30)


@pytest.mark.rule("A1")
async def test_due_dates_skip_the_published_holiday_and_say_which_list(sessions: SessionFactory,
                                                                       tmp_path: Path) -> None:
    acts = CalendarActivities(DatabaseHolidays(sessions))
    req = DeadlineRequest(calendar=FR, items=[DeadlineItem(key="d", business_days_from=WED - timedelta(days=1),
                                                           business_days=1)], reminder_business_days=0)
    assert (await acts.schedule_deadlines(req)).items[0].due_on == WED
    path = tmp_path / "ot.csv"
    path.write_text(csv_of({WED: "OT company day"}))
    await import_holiday_file(path, "FR", sessions, by="ops")
    schedule = await acts.schedule_deadlines(req)
    assert schedule.items[0].due_on == WED + timedelta(days=1) and schedule.holiday_list == "OT list FR v2"


@pytest.mark.rule("A1")
async def test_a_named_ot_region_is_never_seeded_and_the_country_list_stands_in_for_its_missing_years(
        sessions: SessionFactory, tmp_path: Path) -> None:
    y = WED.year
    emea = FR.model_copy(update={"holiday_region": "OT-EMEA"})
    acts = CalendarActivities(DatabaseHolidays(sessions))
    request = BusinessDeadlineRequest(calendar=emea, start=at(WED - timedelta(days=1), 16, 30), minutes=60)
    # A German calendar of the same OT region asking first seeds nothing of OT-EMEA (nor does anyone after it).
    german = emea.model_copy(update={"country": "DE", "timezone": "Europe/Berlin"})
    de = await acts.business_deadline(request.model_copy(update={"calendar": german}))
    assert de.holiday_list == f"OT list DE v1 (no OT-EMEA list for {y - 1}-{y + 1})"
    first = await acts.business_deadline(request)
    assert first.deadline == at(WED, 9, 30)
    assert first.holiday_list == f"OT list FR v1 (no OT-EMEA list for {y - 1}-{y + 1})"
    async with sessions() as s:
        assert await holiday_repo.list_holiday_years(s, "OT-EMEA") == []
        assert await holiday_repo.get_holiday_list(s, "OT-EMEA") is None

    path = tmp_path / "emea.csv"
    path.write_text(csv_of({WED: "EMEA shutdown"}))
    await import_holiday_file(path, "OT-EMEA", sessions, by="ops")
    after = await acts.business_deadline(request)
    assert after.deadline == at(WED + timedelta(days=1), 9, 30)
    assert after.holiday_list == f"OT list OT-EMEA v1 + FR v1 (no OT-EMEA list for {y - 1}, {y + 1})"
    fr = await acts.business_deadline(request.model_copy(update={"calendar": FR}))
    assert fr.deadline == at(WED, 9, 30) and fr.holiday_list == "OT list FR v1"
    # A calendar naming its own country's region seeds it as usual.
    named_fr = FR.model_copy(update={"holiday_region": "FR", "country": "FR"})
    assert (await DatabaseHolidays(sessions).holidays(named_fr, y + 5, y + 5)).list_name == "OT list FR v2"


@pytest.mark.rule("A1")
async def test_one_computation_uses_one_version_even_when_an_import_lands_halfway(sessions: SessionFactory,
                                                                                 tmp_path: Path) -> None:
    """The second item needs years the first read did not cover; an import lands between the two reads: the
    whole schedule is computed again on the new version, which is the one recorded."""
    database = DatabaseHolidays(sessions)
    path = tmp_path / "ot.csv"
    path.write_text(csv_of(package_year(WED.year) | {WED: "OT company day"}))
    reads: list[str] = []

    class ImportAfterFirstRead:
        async def holidays(self, cal: BusinessCalendar, first_year: int, last_year: int) -> PublishedHolidays:
            found = await database.holidays(cal, first_year, last_year)
            reads.append(found.list_name)
            if len(reads) == 1:
                await import_holiday_file(path, "FR", sessions, by="ops")
            return found

    acts = CalendarActivities(ImportAfterFirstRead())
    far = WED + timedelta(days=5 * 365)
    req = DeadlineRequest(calendar=FR, reminder_business_days=0, items=[
        DeadlineItem(key="near", business_days_from=WED - timedelta(days=1), business_days=1),
        DeadlineItem(key="far", business_days_from=far, business_days=1)])
    schedule = await acts.schedule_deadlines(req)
    # v2 is the import, v3 the far years seeded by the second read; the restart reads nothing more.
    assert reads == ["OT list FR v1", "OT list FR v3"], reads
    assert schedule.holiday_list == "OT list FR v3"
    assert schedule.items[0].due_on == WED + timedelta(days=1)  # computed again on v2: OT's day skipped


async def test_a_read_racing_an_import_is_read_again_at_one_version(sessions: SessionFactory,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    real = holiday_repo.list_version
    seen = iter([1, 2])  # the version moves between the first read's two looks, then holds

    async def moving(session: Any, region: str) -> int:
        return next(seen, None) or await real(session, region)

    await DatabaseHolidays(sessions).holidays(FR, 2031, 2031)  # seeds FR v1
    monkeypatch.setattr(holiday_repo, "list_version", moving)
    async with sessions() as s:
        stored = await holiday_repo.stored_holidays(s, "FR", 2031, 2031)
    assert stored.version == 1 and date(2031, 7, 14) in stored.days and next(seen, None) is None

    calls: list[str] = []

    async def always_moving(session: Any, region: str) -> int:
        calls.append(region)
        return len(calls)

    monkeypatch.setattr(holiday_repo, "list_version", always_moving)
    async with sessions() as s:
        with pytest.raises(holiday_repo.HolidayListChanging):
            await holiday_repo.stored_holidays(s, "FR", 2031, 2031, attempts=3)
    assert len(calls) == 6  # two looks per read, three reads


@pytest.mark.rule("A1")
async def test_an_unchanged_list_is_not_read_again_and_a_new_version_is(sessions: SessionFactory,
                                                                        tmp_path: Path) -> None:
    """Request opening computes the deadline in a local activity: once the days are cached, a computation costs
    one version query while nothing was imported, and an import counts at once."""
    engine = sessions.kw["bind"].sync_engine
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(" ".join(statement.split()).lower())

    acts = CalendarActivities(DatabaseHolidays(sessions))
    request = BusinessDeadlineRequest(calendar=FR, start=at(WED - timedelta(days=1), 16, 30), minutes=60,
                                      warning_minutes=15)
    assert (await acts.business_deadline(request)).holiday_list == "OT list FR v1"
    event.listen(engine, "before_cursor_execute", record)
    try:
        again = await acts.business_deadline(request)
        assert again.deadline == at(WED, 9, 30) and again.holiday_list == "OT list FR v1"
        assert [s for s in statements if "from holiday" in s] == [
            s for s in statements if s.startswith("select holiday_lists.version from holiday_lists")], statements
        assert len([s for s in statements if "from holiday" in s]) == 1, statements

        path = tmp_path / "ot.csv"
        path.write_text(csv_of(package_year(WED.year) | {WED: "OT company day"}))
        await import_holiday_file(path, "FR", sessions, by="ops")
        statements.clear()
        after = await acts.business_deadline(request)
        assert after.deadline == at(WED + timedelta(days=1), 9, 30) and after.holiday_list == "OT list FR v2"
        assert any("from holidays" in s for s in statements), statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def test_two_workers_seeding_one_region_at_once_write_it_once(sessions: SessionFactory) -> None:
    """On SQLite and PostgreSQL (the `sessions` fixture): there the second waits on the first's FOR UPDATE."""
    source = DatabaseHolidays(sessions)
    a, b = await asyncio.gather(source.holidays(FR, 2031, 2032), source.holidays(FR, 2031, 2032))
    assert a == b and a.list_name == "OT list FR v1"
    assert date(2031, 7, 14) in a.days
    async with sessions() as s:
        assert int((await s.execute(select(func.count()).select_from(HolidayYearRow))).scalar_one()) == 2


def test_results_recorded_before_decode_without_a_list() -> None:
    old = BusinessDeadline.model_validate({"deadline": "2027-03-30T07:30:00Z", "warning_at": None})
    assert old.holiday_list is None


# ---- the files: all or nothing --------------------------------------------------------------------------


@pytest.mark.rule("A1")
async def test_a_bad_line_refuses_the_whole_file_naming_it_and_nothing_changes(sessions: SessionFactory,
                                                                               tmp_path: Path) -> None:
    path = tmp_path / "first.csv"
    path.write_text(csv_of({WED: "OT company day"}))
    await import_holiday_file(path, "FR", sessions, by="ops")
    stored = await snapshot(sessions)

    bad = tmp_path / "bad.csv"
    bad.write_text(f"date,name\n{WED + timedelta(days=7)},Fine\n{WED.year}-02-30,Bad date\n"
                   f"{WED + timedelta(days=9)}, \n{WED + timedelta(days=7)},Twice\n")
    with pytest.raises(HolidayListError) as info:
        await import_holiday_file(bad, "FR", sessions, by="ops")
    assert [str(i) for i in info.value.issues] == [
        f"line 3, field date: '{WED.year}-02-30' is not a date (YYYY-MM-DD)",
        "line 4, field name: blank: every holiday needs a name",
        f"line 5, field date: {WED + timedelta(days=7)} already appears on line 2"]
    assert await snapshot(sessions) == stored


@pytest.mark.parametrize(("text", "expected"), [
    ("", "line 1: empty file; expected a header date,name"),
    ("day,name\n2027-01-01,x\n", "line 1: header: expected the columns date,name, found day,name"),
    ("date,name\n20270101,x\n", "line 2, field date: '20270101' is not a date (YYYY-MM-DD)"),
    ("date,name\n2027-01-01\n", "line 2: expected 2 fields, found 1"),
    ("date,name\n", "line 1: no holiday in the file"),
])
def test_csv_refusals_name_the_line(text: str, expected: str) -> None:
    with pytest.raises(HolidayListError) as info:
        parse_holiday_csv(text)
    assert str(info.value).startswith(expected), str(info.value)


def test_csv_columns_in_any_order_and_a_byte_order_mark() -> None:
    parsed = parse_holiday_csv("\ufeffname,date\nOT day,2027-05-12\n")
    assert [(h.day, h.name, h.line) for h in parsed] == [(date(2027, 5, 12), "OT day", 2)]


@pytest.mark.rule("A1")
async def test_an_ics_file_imports_all_day_events_and_replaces_only_the_years_it_covers(
        sessions: SessionFactory, tmp_path: Path) -> None:
    y = WED.year + 1
    first = tmp_path / "two-years.csv"
    first.write_text(csv_of({date(y, 1, 1): "New year", date(y + 1, 1, 1): "New year"}))
    await import_holiday_file(first, "DE-BY", sessions, by="ops")
    ics = tmp_path / "ot.ics"
    ics.write_text(ics_of(vevent("1", f"{y}0512", "OT day"), vevent("2", f"{y}1224", "Winter closure", f"{y}1227")))
    report = await import_holiday_file(ics, "DE-BY", sessions, by="ops@ot.example")
    assert report.years == [y] and report.holidays == 4 and report.removed == 1 and report.version == 2
    async with sessions() as s:
        year_y = await holiday_repo.list_holidays(s, "DE-BY", y)
        year_after = await holiday_repo.list_holidays(s, "DE-BY", y + 1)
        years = {r.year: r for r in await holiday_repo.list_holiday_years(s, "DE-BY")}
    assert [(h.day, h.name) for h in year_y] == [(date(y, 5, 12), "OT day")] + [
        (date(y, 12, d), "Winter closure") for d in (24, 25, 26)]
    assert [h.day for h in year_after] == [date(y + 1, 1, 1)]  # a year the file does not cover is kept
    assert years[y].source == "import ot.ics" and years[y + 1].source == "import two-years.csv"


def test_ics_refusals_name_the_line_and_property() -> None:
    text = ics_of(vevent("1", "20270512", "OT day"), vevent("2", "20271332", "Bad"), vevent("3", "20270601", ""),
                  "BEGIN:VEVENT\r\nUID:4\r\nDTSTART:20270701T100000Z\r\nSUMMARY:Timed\r\nEND:VEVENT\r\n")
    with pytest.raises(HolidayListError) as info:
        parse_holiday_ics(text)
    issues = [str(i) for i in info.value.issues]
    assert issues[0].startswith("line 11, field DTSTART: Wrong date format 20271332"), issues
    assert issues[1] == "line 16, field SUMMARY: blank: every holiday needs a name"
    assert issues[2].startswith("line 21, field DTSTART: 2027-07-01 10:00:00+00:00 is not an all-day date")
    with pytest.raises(HolidayListError) as garbage:
        parse_holiday_ics("BEGIN:VCALENDAR\r\nnot a content line\r\nEND:VCALENDAR\r\n")
    assert str(garbage.value).startswith("line 2: not valid iCalendar")


def test_describe_list_for_the_programme_page() -> None:
    assert describe_list("FR", None, []).startswith("OT list FR: nothing published yet")


# ---- the command line -------------------------------------------------------------------------------------


@dataclass
class Cli:
    tmp: Path
    runner: CliRunner

    def __call__(self, *args: str) -> Result:
        result = self.runner.invoke(cli_app, list(args))
        assert result.exception is None or isinstance(result.exception, SystemExit), (result.output, result.exception)
        return result


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    offline_cli_environment(tmp_path, monkeypatch, "the command connected to Temporal")
    return Cli(tmp_path, CliRunner())


@pytest.mark.rule("A1")
def test_the_cli_imports_and_lists_a_region_year_and_refuses_a_bad_file(run: Cli) -> None:
    bad = run.tmp / "bad.ics"
    bad.write_text(ics_of(vevent("1", f"{WED:%Y%m%d}", "OT day"), vevent("2", f"{WED.year}0230", "Bad")))
    refused = run("holidays", "import", str(bad), "--region", "FR", "--json")
    assert refused.exit_code == 2, refused.output
    assert "nothing was imported" in refused.stderr and "line 11, field DTSTART" in refused.stderr
    empty = run("holidays", "list", "--region", "FR", "--year", str(WED.year), "--json")
    assert empty.exit_code == 0 and json.loads(empty.stdout)["holidays"] == []

    good = run.tmp / "ot.csv"
    good.write_text(csv_of({WED: "OT company day"}))
    imported = run("holidays", "import", str(good), "--region", "FR", "--by", "ops@ot.example", "--json")
    assert imported.exit_code == 0, imported.output
    assert json.loads(imported.stdout) | {"path": None} == {"path": None, "region": "FR", "version": 1,
                                                             "years": [WED.year], "holidays": 1, "removed": 0}
    listed = json.loads(run("holidays", "list", "--region", "FR", "--year", str(WED.year), "--json").stdout)
    assert listed["holidays"] == [{"date": WED.isoformat(), "name": "OT company day"}]
    assert (listed["version"], listed["source"], listed["updated_by"]) == (1, "import ot.csv", "ops@ot.example")
    human = run("holidays", "list", "--region", "FR", "--year", str(WED.year))
    assert "OT company day" in human.stdout and "import ot.csv" in human.stdout
    bad_region = run("holidays", "list", "--region", "-FR", "--year", "2027")
    assert bad_region.exit_code == 2 and "a holiday region is" in bad_region.stderr


# ---- the ops page and the programme page ------------------------------------------------------------------

OPS, MANAGER = "ops@techconnect.example", "manager@techconnect.example"


@dataclass
class Portal(InProcess):
    app: Any
    sessions: SessionFactory
    tl_email: str


@pytest_asyncio.fixture
async def portal(tmp_path: Path, sqlite_url: str) -> AsyncIterator[Portal]:
    async with migrated_sessions(sqlite_url) as sessions:
        mine = await seed_tenant(sessions, "acme", "tl-alice")
        for email, role in ((OPS, Role.ops), (MANAGER, Role.support_manager)):
            await add_staff(sessions, email, role)
        (tmp_path / "ot.csv").write_text(csv_of({WED: "OT company <day>"}))
        await import_holiday_file(tmp_path / "ot.csv", "FR", sessions, by="ops@ot.example")
        settings = Settings(data_dir=tmp_path, database_url=sqlite_url, portal_secret="test-secret-" + "x" * 20)
        app = create_app(settings, sessions=sessions, client=UnreachableTemporal())  # type: ignore[arg-type]
        async with app.router.lifespan_context(app):
            yield Portal(app, sessions, mine.tl_email)


@pytest.mark.rule("A1")
@pytest.mark.parametrize(("who", "status"), [(OPS, 200), (MANAGER, 403), ("tl", 403)])
async def test_the_holidays_page_is_for_operations(portal: Portal, who: str, status: int) -> None:
    async with portal.client() as http:
        await sign_in(http, portal.tl_email if who == "tl" else who)
        page = await http.get("/ops/holidays", params={"region": "FR", "year": str(WED.year)})
        account = await http.get("/account")
    assert page.status_code == status
    assert ('href="/ops/holidays"' in account.text) == (status == 200)
    if status == 200:
        assert 'data-region="FR"' in page.text and f'data-day="{WED.isoformat()}"' in page.text
        assert "OT company &lt;day&gt;" in page.text and "import ot.csv" in page.text


@pytest.mark.rule("A1")
async def test_the_programme_page_says_which_holiday_list_it_uses(portal: Portal,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    async def live(_client: Any, customer_id: str) -> Any:
        return programme_status(customer_id, "tl-alice")

    monkeypatch.setattr(actions, "programme_status", live)
    async with portal.client() as http:
        await sign_in(http, OPS)
        page = await http.get("/programmes/acme")
    assert page.status_code == 200
    line = page.text[page.text.index("data-holiday-list"):]
    line = line[:line.index("</dd>")]
    assert f"OT list FR, version 1: {WED.year} import ot.csv by ops@ot.example on" in line
    assert 'href="/ops/holidays?region=FR"' in line


@pytest.mark.rule("A1")
async def test_the_holidays_page_refuses_a_year_no_date_has_and_defaults_to_the_portal_clock(portal: Portal) -> None:
    later = datetime(WED.year + 7, 6, 1, 12, tzinfo=UTC)
    portal.app.state.portal.clock = lambda: later
    async with portal.client() as http:
        await sign_in(http, OPS)
        refused = [await http.get("/ops/holidays", params={"region": "FR", "year": y}) for y in ("0", "10000", "x")]
        default = await http.get("/ops/holidays", params={"region": "DE"})
    assert [r.status_code for r in refused] == [422, 422, 422]
    assert "is not a year from 1 to 9999" in refused[0].text
    assert default.status_code == 200 and f"DE has no list for {later.year} yet" in default.text
