"""A bad line of a file ops import (the maintenance registry, OT's price list): every one is reported at once,
as "line 3, field end: ...", so a file is fixed in one go."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FileIssue:
    line: int
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", field {self.field}" if self.field else "")
        return f"{where}: {self.message}"
