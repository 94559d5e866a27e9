"""`techconnect maintenance import`: the rule E1 registry, all or nothing, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

from storage import repositories as repo
from storage.db import SessionFactory
from storage.maintenance_import import MaintenanceImportError, import_maintenance_csv, parse_maintenance_csv
from storage.tables import MaintenanceSubscriptionRow

HEADER = "id,customer_id,start,end,contact_count\n"


def write(tmp_path: Path, body: str, name: str = "subs.csv") -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


async def stored(sessions: SessionFactory) -> int:
    async with sessions() as s:
        return int((await s.execute(select(func.count()).select_from(MaintenanceSubscriptionRow))).scalar_one())


async def test_import_inserts_then_updates_by_id(sessions: SessionFactory, tmp_path: Path) -> None:
    first = write(tmp_path, HEADER + "SMP-1001,acme,2026-01-01,2028-12-31,4\nSMP-2002,globex,2027-01-01,2027-12-31,0\n")
    report = await import_maintenance_csv(first, sessions)
    # The CLI prints model_dump() with --json: plain, JSON-ready values.
    assert report.model_dump() == {"path": str(first), "inserted": 2, "updated": 0, "total": 2}

    # Column order is free, blank lines are skipped; SMP-1001 is extended, SMP-3003 is new.
    second = write(tmp_path, "customer_id,id,contact_count,end,start\n\nacme,SMP-1001,5,2029-12-31,2026-01-01\n"
                             "initech,SMP-3003,1,2027-06-30,2026-07-01\n", "again.csv")
    report = await import_maintenance_csv(second, sessions)
    assert (report.inserted, report.updated) == (1, 1)
    assert await stored(sessions) == 3
    async with sessions() as s:
        row = await repo.get_subscription(s, "SMP-1001")
        assert row is not None
        assert (row.end, row.contact_count) == (date(2029, 12, 31), 5)


async def test_bad_line_imports_nothing_and_names_line_and_field(sessions: SessionFactory, tmp_path: Path) -> None:
    # rule E1 registry: a half-imported file would make enrolment checks depend on where it broke.
    path = write(tmp_path, HEADER + "SMP-1001,acme,2026-01-01,2028-12-31,4\nSMP-2002,globex,2027-01-01,2027-13-01,0\n")
    with pytest.raises(MaintenanceImportError) as info:
        await import_maintenance_csv(path, sessions)
    assert str(info.value) == "line 3, field end: '2027-13-01' is not a date (YYYY-MM-DD)"
    assert [(i.line, i.field) for i in info.value.issues] == [(3, "end")]
    assert await stored(sessions) == 0


async def test_failed_reimport_keeps_the_previous_registry(sessions: SessionFactory, tmp_path: Path) -> None:
    await import_maintenance_csv(write(tmp_path, HEADER + "SMP-1001,acme,2026-01-01,2028-12-31,4\n"), sessions)
    bad = write(tmp_path, HEADER + "SMP-1001,acme,2026-01-01,2030-12-31,4\nSMP-9,acme,2026-01-01,2025-01-01,1\n",
                "bad.csv")
    with pytest.raises(MaintenanceImportError, match=r"line 3, field end: 2025-01-01 is before start 2026-01-01"):
        await import_maintenance_csv(bad, sessions)
    async with sessions() as s:
        row = await repo.get_subscription(s, "SMP-1001")
        assert row is not None
        assert row.end == date(2028, 12, 31)
    assert await stored(sessions) == 1


@pytest.mark.parametrize(("body", "expected"), [
    (HEADER + "SMP-1,acme,2026-01-01,2027-01-01,1\nSMP-1,acme,2026-01-01,2027-01-01,1\n",
     "line 3, field id: 'SMP-1' already appears on line 2"),
    (HEADER + "SMP-1,acme,20260101,2027-01-01,1\n", "line 2, field start: '20260101' is not a date (YYYY-MM-DD)"),
    (HEADER + "SMP-1,ACME Corp,2026-01-01,2027-01-01,1\n", "line 2, field customer_id: 'ACME Corp'"),
    (HEADER + "SMP-1,acme,2026-01-01,2027-01-01,-2\n", "line 2, field contact_count: '-2' is not a whole number"),
    (HEADER + ",acme,2026-01-01,2027-01-01,1\n", "line 2, field id: is empty"),
    (HEADER + "SMP-1,acme,2026-01-01\n", "line 2: expected 5 fields, found 3"),
    ("id,customer_id,start,stop,contact_count\n", "line 1: header: missing column(s) end; unknown column(s) stop"),
    ("", "line 1: empty file"),
])
def test_each_kind_of_bad_row_is_refused_with_its_line(tmp_path: Path, body: str, expected: str) -> None:
    with pytest.raises(MaintenanceImportError) as info:
        parse_maintenance_csv(write(tmp_path, body))
    assert expected in str(info.value)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "SMP-1,acme,2026-02-30,2027-01-01,x\nSMP-2,acme,2026-01-01,2027-01-01,1\n"
                                    "SMP-3,acme,2026-01-01,,1\n")
    with pytest.raises(MaintenanceImportError) as info:
        parse_maintenance_csv(path)
    assert [(i.line, i.field) for i in info.value.issues] == [(2, "start"), (2, "contact_count"), (4, "end")]


def test_byte_order_mark_and_quoted_fields_are_read(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(("\ufeff" + HEADER + '"SMP-1","acme","2026-01-01","2027-01-01","2"\n').encode())
    (sub,) = parse_maintenance_csv(path)
    assert (sub.id, sub.contact_count) == ("SMP-1", 2)
