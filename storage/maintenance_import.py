"""Import of the maintenance-subscription registry (rule E1) from ops' CSV export.

`techconnect maintenance import FILE.csv` calls `import_maintenance_csv`. The file is
validated as a whole before anything is written, and written in one transaction: a
registry half imported would let enrolment checks pass or fail on a mix of old and
new data. Every bad row is reported at once, by line and field, so ops can fix the
file in one go.
"""

from __future__ import annotations

import csv
import re
from datetime import date
from pathlib import Path

from pydantic import BaseModel, computed_field

from domain.enrolment import MaintenanceSubscription
from domain.file_issues import CsvRecords, FileIssue
from domain.naming import is_valid_customer_id
from storage.db import SessionFactory
from storage.repositories.customers import upsert_subscriptions

COLUMNS = ("id", "customer_id", "start", "end", "contact_count")

# date.fromisoformat also takes "20270104" and week dates; the file contract is YYYY-MM-DD.
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_COUNT_RE = re.compile(r"^[0-9]+$")
_MAX_ID = 64  # width of maintenance_subscriptions.id


ImportIssue = FileIssue  # a bad row, "line 3, field end: ..."


class MaintenanceImportError(ValueError):
    """The file was refused; nothing was imported. `issues` lists every problem found.

    The message is only the issues ("line 3, field end: ..."): callers add the file name
    and "nothing was imported" in their own words.
    """

    def __init__(self, path: Path, issues: list[ImportIssue]) -> None:
        self.path = path
        self.issues = issues
        super().__init__("; ".join(map(str, issues)))


class ImportReport(BaseModel):
    """JSON-ready (`techconnect maintenance import --json` prints `model_dump()`)."""

    path: str
    inserted: int
    updated: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total(self) -> int:
        return self.inserted + self.updated


def _parse_date(raw: str, line: int, name: str, issues: list[ImportIssue]) -> date | None:
    if _DATE_RE.match(raw):
        try:
            return date.fromisoformat(raw)
        except ValueError:
            pass
    issues.append(ImportIssue(line, name, f"{raw!r} is not a date (YYYY-MM-DD)"))
    return None


def parse_maintenance_csv(path: Path) -> list[MaintenanceSubscription]:
    """Validate the whole file; raise MaintenanceImportError listing every bad field."""
    issues: list[ImportIssue] = []
    try:
        # utf-8-sig: spreadsheets often save a byte-order mark that would glue itself to "id".
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MaintenanceImportError(path, [ImportIssue(1, None, f"not UTF-8 text ({exc})")]) from exc
    rows = CsvRecords(text)
    records = iter(rows)
    try:
        header = next(((n, v) for n, v in records if any(x.strip() for x in v)), None)
    except csv.Error as exc:
        raise MaintenanceImportError(path, [ImportIssue(rows.line, None, f"not valid CSV ({exc})")]) from exc
    if header is None:
        raise MaintenanceImportError(path, [ImportIssue(1, None, f"empty file; expected a header {','.join(COLUMNS)}")])
    header_line, names = header[0], [n.strip().lower() for n in header[1]]
    missing = [c for c in COLUMNS if c not in names]
    unknown = [n for n in names if n not in COLUMNS]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if missing or unknown or duplicated:
        parts = ([f"missing column(s) {', '.join(missing)}"] if missing else []) + (
            [f"unknown column(s) {', '.join(unknown)}"] if unknown else []) + (
            [f"repeated column(s) {', '.join(duplicated)}"] if duplicated else [])
        raise MaintenanceImportError(path, [ImportIssue(header_line, None, "header: " + "; ".join(parts) +
                                                        f" (expected {','.join(COLUMNS)})")])
    position = {n: i for i, n in enumerate(names)}

    subscriptions: list[MaintenanceSubscription] = []
    first_line_of: dict[str, int] = {}
    try:
        for line, values in records:
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(names):
                issues.append(ImportIssue(line, None, f"expected {len(names)} fields, found {len(values)}"))
                continue
            raw = {c: values[position[c]].strip() for c in COLUMNS}
            before = len(issues)
            sub_id, customer_id = raw["id"], raw["customer_id"]
            if not sub_id:
                issues.append(ImportIssue(line, "id", "is empty"))
            elif len(sub_id) > _MAX_ID:
                issues.append(ImportIssue(line, "id", f"{sub_id!r} is longer than {_MAX_ID} characters"))
            elif sub_id in first_line_of:
                issues.append(ImportIssue(line, "id", f"{sub_id!r} already appears on line {first_line_of[sub_id]}"))
            else:
                first_line_of[sub_id] = line
            if not is_valid_customer_id(customer_id):
                issues.append(ImportIssue(line, "customer_id", f"{customer_id!r} is not a customer ID "
                                                               "(lower-case letters, digits and '-', at most 63)"))
            start = _parse_date(raw["start"], line, "start", issues)
            end = _parse_date(raw["end"], line, "end", issues)
            if start is not None and end is not None and end < start:
                issues.append(ImportIssue(line, "end", f"{end} is before start {start}"))
            count_raw = raw["contact_count"]
            count = int(count_raw) if _COUNT_RE.match(count_raw) else None
            if count is None:
                issues.append(ImportIssue(line, "contact_count", f"{count_raw!r} is not a whole number >= 0"))
            if len(issues) == before and start is not None and end is not None and count is not None:
                subscriptions.append(MaintenanceSubscription(id=sub_id, customer_id=customer_id, start=start,
                                                             end=end, contact_count=count))
    except csv.Error as exc:
        issues.append(ImportIssue(rows.line, None, f"not valid CSV ({exc})"))
    if issues:
        raise MaintenanceImportError(path, issues)
    return subscriptions


async def import_maintenance_csv(path: Path, session_factory: SessionFactory) -> ImportReport:
    """Validate `path`, then upsert every row by id in one transaction (all or nothing)."""
    subscriptions = parse_maintenance_csv(path)
    async with session_factory() as session, session.begin():
        counts = await upsert_subscriptions(session, subscriptions)
    return ImportReport(path=str(path), inserted=counts.inserted, updated=counts.updated)


__all__ = ["COLUMNS", "ImportIssue", "ImportReport", "MaintenanceImportError", "import_maintenance_csv",
           "parse_maintenance_csv"]
