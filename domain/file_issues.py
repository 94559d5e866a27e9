"""A bad line of a file ops import (the maintenance registry, OT's price list): every one is reported at once,
as "line 3, field end: ...", so a file is fixed in one go."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
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
