"""Import of OT's price list (rule C3) from ops' CSV: `techconnect prices import FILE.csv`.

The file is validated whole by `domain.prices.parse_price_list_csv`, then written in one
transaction by `storage.repositories.prices.import_prices`: a list half imported would price
the next extras from a mix of old and new prices. Every bad line is reported at once.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, computed_field

from domain.prices import PriceListError, PriceListIssue, parse_price_list_csv
from storage.db import SessionFactory
from storage.repositories.prices import import_prices


class PriceImportReport(BaseModel):
    """JSON-ready (`techconnect prices import --json` prints `model_dump()`)."""

    path: str
    inserted: int
    replaced: int
    unchanged: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total(self) -> int:
        return self.inserted + self.replaced + self.unchanged


def read_price_list(path: Path) -> str:
    """The file's text; PriceListError when it is not UTF-8 (OSError when it cannot be read)."""
    try:
        # utf-8-sig: spreadsheets often save a byte-order mark that would glue itself to "kind".
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PriceListError([PriceListIssue(1, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})")]) from None


async def import_price_list_csv(path: Path, session_factory: SessionFactory, *, by: str) -> PriceImportReport:
    """Validate `path`, then store every line in one transaction (all or nothing); PriceListError otherwise."""
    entries = parse_price_list_csv(read_price_list(path))
    async with session_factory() as session, session.begin():
        counts = await import_prices(session, entries, by=by)
    return PriceImportReport(path=str(path), inserted=counts.inserted, replaced=counts.replaced,
                             unchanged=counts.unchanged)


__all__ = ["PriceImportReport", "import_price_list_csv", "read_price_list"]
