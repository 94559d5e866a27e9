"""A bad line of a file ops import (the maintenance registry, OT's price list, OT's holiday lists): every one is
reported at once, as "line 3, field end: ...", so a file is fixed in one go."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class FileIssue:
    line: int
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", field {self.field}" if self.field else "")
        return f"{where}: {self.message}"


class CsvRecords:
    """CSV records with the physical line each ended on (quoted newlines included)."""

    def __init__(self, text: str) -> None:
        self._reader = csv.reader(io.StringIO(text, newline=""))

    @property
    def line(self) -> int:
        return self._reader.line_num

    def __iter__(self) -> Iterator[tuple[int, list[str]]]:
        for values in self._reader:
            yield self._reader.line_num, values


def csv_rows(text: str, columns: Sequence[str], header_issue: Callable[[int, list[str]], FileIssue | None],
             issues: list[FileIssue]) -> Iterator[tuple[int, dict[str, str]]]:
    """The data lines of a CSV file with a header naming `columns` in any order, as (line, column -> raw value).

    The header is the first non-blank line (a spreadsheet's byte-order mark would glue itself to its first
    name, so it is dropped); `header_issue` judges its lower-cased names. An empty file, a bad header, a line
    with the wrong number of fields or broken CSV is appended to `issues` (the first two stop the file);
    blank lines are skipped.
    """
    rows = CsvRecords(text.removeprefix("\ufeff"))
    records = iter(rows)
    try:
        header = next(((n, v) for n, v in records if any(x.strip() for x in v)), None)
        if header is None:
            issues.append(FileIssue(1, None, f"empty file; expected a header {','.join(columns)}"))
            return
        names = [n.strip().lower() for n in header[1]]
        if (bad := header_issue(header[0], names)) is not None:
            issues.append(bad)
            return
        position = {n: i for i, n in enumerate(names)}
        for line, values in records:
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(names):
                issues.append(FileIssue(line, None, f"expected {len(names)} fields, found {len(values)}"))
                continue
            yield line, {c: values[position[c]] for c in columns}
    except csv.Error as exc:
        issues.append(FileIssue(rows.line, None, f"not valid CSV ({exc})"))
