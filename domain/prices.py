"""OT's price list and the price of a billable extra (rule C3: "follows OT's current price list").

Pure: the CSV text in, entries out; the entry in force on a day; quantity × unit price. Reading the
file and writing the rows are storage's (`storage/price_import.py`, `storage/repositories/prices.py`).

The file, one line a price, all or nothing:

    kind,basis,unit_price,currency,effective_from,description
    on_site_dispatch,unit,1450.00,EUR,2027-01-01,One engineer on site for a day

`kind` is a `BillableExtraKind`; `basis` says what a quantity of 1 is (`unit`: one item, `month`: a
month of service, `period`: a whole programme period); a price applies from `effective_from` until
the next line of the same kind takes over.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from domain.errors import Refused
from domain.file_issues import FileIssue, csv_rows
from domain.money import Money
from domain.step_inputs import BillableExtraKind

PriceBasis = Literal["unit", "month", "period"]
BASES: tuple[str, ...] = get_args(PriceBasis)
COLUMNS = ("kind", "basis", "unit_price", "currency", "effective_from", "description")
CENT = Decimal("0.01")
# The widest amount the ledger's Numeric(12, 2) columns hold.
MAX_AMOUNT = Decimal("9999999999.99")

# date.fromisoformat also takes "20270104" and week dates; the file contract is YYYY-MM-DD.
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_PRICE_RE = re.compile(r"^[0-9]+(\.[0-9]{1,2})?$")
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")


class PriceListEntry(BaseModel):
    """One price of OT's list. `line` is where it came from in the imported file (not part of the price)."""

    model_config = ConfigDict(frozen=True)

    kind: BillableExtraKind
    basis: PriceBasis
    unit_price: Decimal = Field(ge=0, le=MAX_AMOUNT, decimal_places=2)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    effective_from: date
    description: str = ""
    line: int | None = Field(default=None, exclude=True)

    def same_price(self, other: PriceListEntry) -> bool:
        """What an extra priced from the entry copies (rule C3): a change to these re-prices nothing already
        recorded, so a stored entry that priced extras keeps them (storage refuses the change)."""
        return (self.basis, self.unit_price, self.currency) == (other.basis, other.unit_price, other.currency)

    def same_content(self, other: PriceListEntry) -> bool:
        return self.same_price(other) and self.description == other.description


PriceListIssue = FileIssue  # a bad line of the file, told as "line 3, field unit_price: ..."


class PriceListError(Refused):
    """The price list was refused (the CLI exits 2); `issues` lists every bad line. Nothing was written.

    The message is only the issues: callers add the file name and "nothing was imported" in their words.
    """

    def __init__(self, issues: list[PriceListIssue]) -> None:
        self.issues = issues
        super().__init__("; ".join(map(str, issues)))


class ExtraPrice(BaseModel):
    """What the ledger stores for an extra (rule C3): the list price it was priced from, if any, and the
    amount billed: quantity × unit price, or the override given with its reason. No amount: unpriced."""

    quantity: Decimal
    basis: PriceBasis | None = None
    unit_price: Decimal | None = None
    effective_from: date | None = None
    amount: Decimal | None = None
    currency: str | None = None

    @property
    def priced(self) -> bool:
        return self.amount is not None


# ---- the file --------------------------------------------------------------------------------------


def _header_issue(line: int, names: list[str]) -> PriceListIssue | None:
    missing = [c for c in COLUMNS if c not in names]
    unknown = [n for n in names if n not in COLUMNS]
    repeated = sorted({n for n in names if names.count(n) > 1})
    parts = ([f"missing column(s) {', '.join(missing)}"] if missing else []) + (
        [f"unknown column(s) {', '.join(unknown)}"] if unknown else []) + (
        [f"repeated column(s) {', '.join(repeated)}"] if repeated else [])
    if not parts:
        return None
    return PriceListIssue(line, None, "header: " + "; ".join(parts) + f" (expected {','.join(COLUMNS)})")


def _kind(raw: str, line: int, issues: list[PriceListIssue]) -> BillableExtraKind | None:
    try:
        return BillableExtraKind(raw)
    except ValueError:
        issues.append(PriceListIssue(line, "kind", f"{raw!r} is not a kind of billable extra "
                                                   f"({', '.join(k.value for k in BillableExtraKind)})"))
        return None


def _price(raw: str, line: int, issues: list[PriceListIssue]) -> Decimal | None:
    if _PRICE_RE.match(raw):
        value = Decimal(raw)
        if value <= MAX_AMOUNT:
            return value
        issues.append(PriceListIssue(line, "unit_price", f"{raw} is above {MAX_AMOUNT}"))
        return None
    try:
        negative = Decimal(raw) < 0
    except InvalidOperation:
        negative = False
    why = "is negative" if negative else "is not a price (a decimal >= 0 with at most 2 decimals, e.g. 1450.00)"
    issues.append(PriceListIssue(line, "unit_price", f"{raw!r} {why}"))
    return None


def iso_day(raw: str) -> date | None:
    """A YYYY-MM-DD date, or None: not "20270104" nor a week date, which `date.fromisoformat` also takes."""
    if _DATE_RE.match(raw):
        try:
            return date.fromisoformat(raw)
        except ValueError:
            pass
    return None


def _date(raw: str, line: int, issues: list[PriceListIssue]) -> date | None:
    if (day := iso_day(raw)) is not None:
        return day
    issues.append(PriceListIssue(line, "effective_from", f"{raw!r} is not a date (YYYY-MM-DD)"))
    return None


def _entry(line: int, raw: dict[str, str], first_line_of: dict[tuple[str, date], int],
           issues: list[PriceListIssue]) -> PriceListEntry | None:
    before = len(issues)
    kind = _kind(raw["kind"], line, issues)
    basis = raw["basis"]
    if basis not in BASES:
        issues.append(PriceListIssue(line, "basis", f"{basis!r} is not a basis ({' | '.join(BASES)})"))
    price = _price(raw["unit_price"], line, issues)
    if not _CURRENCY_RE.match(raw["currency"]):
        issues.append(PriceListIssue(line, "currency", f"{raw['currency']!r} is not a currency code "
                                                       "(three capital letters, e.g. EUR)"))
    effective_from = _date(raw["effective_from"], line, issues)
    if kind is not None and effective_from is not None:
        key = (kind.value, effective_from)
        if key in first_line_of:
            issues.append(PriceListIssue(line, "effective_from", f"{kind.value} from {effective_from} already "
                                                                 f"appears on line {first_line_of[key]}"))
        else:
            first_line_of[key] = line
    if len(issues) > before or kind is None or price is None or effective_from is None:
        return None
    return PriceListEntry(kind=kind, basis=basis, unit_price=price, currency=raw["currency"],  # type: ignore[arg-type]
                          effective_from=effective_from, description=raw["description"], line=line)


def parse_price_list_csv(text: str) -> list[PriceListEntry]:
    """Validate the whole file; raise PriceListError listing every bad line and field (rule C3)."""
    entries: list[PriceListEntry] = []
    issues: list[PriceListIssue] = []
    first_line_of: dict[tuple[str, date], int] = {}
    for line, raw in csv_rows(text, COLUMNS, _header_issue, issues):
        entry = _entry(line, {c: v.strip() for c, v in raw.items()}, first_line_of, issues)
        if entry is not None:
            entries.append(entry)
    if issues:
        raise PriceListError(issues)
    return entries


# ---- prices ----------------------------------------------------------------------------------------


def price_on(entries: Iterable[PriceListEntry], kind: BillableExtraKind, on: date) -> PriceListEntry | None:
    """The price of `kind` in force on `on`: the entry with the latest `effective_from` on or before it."""
    in_force = [e for e in entries if e.kind == kind and e.effective_from <= on]
    return max(in_force, key=lambda e: e.effective_from, default=None)


def price_extra(quantity: Decimal, entry: PriceListEntry | None, override: Money | None = None,
                months: int | None = None) -> ExtraPrice:
    """Rule C3: the amount of an extra is quantity × the list's unit price (to the cent, half up), or the
    override given with its reason (checked by `check_billable_extra`); the list price is kept beside an
    override so the ledger shows both. No list price and no override: unpriced, never refused (the extra is
    recorded all the same, ops price it by hand). An amount too wide for the ledger is left unpriced too."""
    if entry is not None and entry.basis == "month" and months:
        # Priced per month: an extra that covers a period of `months` months bills that many (C3, C5).
        quantity = quantity * months
    if entry is None:
        amount = override.amount if override is not None else None
        return ExtraPrice(quantity=quantity, amount=amount, currency=override.currency if override else None)
    priced = ExtraPrice(quantity=quantity, basis=entry.basis, unit_price=entry.unit_price,
                        effective_from=entry.effective_from)
    if override is not None:
        return priced.model_copy(update={"amount": override.amount, "currency": override.currency})
    amount = (quantity * entry.unit_price).quantize(CENT, ROUND_HALF_UP)
    if amount > MAX_AMOUNT:
        return priced
    return priced.model_copy(update={"amount": amount, "currency": entry.currency})


__all__ = ["BASES", "COLUMNS", "MAX_AMOUNT", "ExtraPrice", "PriceBasis", "PriceListEntry", "PriceListError",
           "PriceListIssue", "iso_day", "parse_price_list_csv", "price_extra", "price_on"]
