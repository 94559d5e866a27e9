"""The billable-extras ledger as the faces hand it out (rule C3): one CSV format and one set of totals,
shared by `techconnect extras export|list` and the portal's `/ops/extras` (faces never import each other).

Columns are a stable interface for invoicing: amounts are plain decimals ("1234.50"), times ISO 8601
in UTC, and an extra with no price (no list price for its kind on the day, no override) says
`unpriced` in `amount`, so a spreadsheet's sum skips it and a person sees it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from domain.prices import CENT
from storage.repositories.clock import as_utc
from storage.tables import BillableExtraRow

LEDGER_COLUMNS = ("id", "customer_id", "period", "recorded_at", "kind", "rule", "agreement_ref", "description",
                  "quantity", "price_basis", "unit_price", "amount", "currency", "override_reason", "recorded_by")
UNPRICED = "unpriced"


def plain(value: Decimal | None) -> str | None:
    """1234.5 -> "1234.50": two decimals, no grouping, the same from SQLite and PostgreSQL."""
    return None if value is None else f"{value.quantize(CENT):f}"


def plain_quantity(value: Decimal) -> str:
    """A whole quantity without decimals ("2"), else two ("1.50")."""
    q = value.quantize(CENT)
    return f"{q:.0f}" if q == q.to_integral_value() else f"{q:f}"


def ledger_line(row: BillableExtraRow) -> dict[str, Any]:
    """One extra as JSON (`extras list --json`): the CSV's columns, `amount` null while unpriced, and `priced`."""
    return {
        "id": row.id, "customer_id": row.customer_id, "period": row.period,
        "recorded_at": as_utc(row.recorded_at).isoformat(timespec="seconds"),
        "kind": row.kind, "rule": row.rule, "agreement_ref": row.agreement_ref, "description": row.description,
        "quantity": plain_quantity(row.quantity), "price_basis": row.price_basis,
        "unit_price": plain(row.unit_price), "amount": plain(row.amount), "currency": row.currency,
        "override_reason": row.override_reason, "recorded_by": row.recorded_by,
        "priced": row.amount is not None,
    }


def ledger_csv(rows: Iterable[BillableExtraRow]) -> str:
    """The ledger as CSV text, header first, in `LEDGER_COLUMNS` order."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(LEDGER_COLUMNS)
    for row in rows:
        line = ledger_line(row)
        if line["amount"] is None:
            line["amount"] = UNPRICED
        writer.writerow([_cell(line[c]) for c in LEDGER_COLUMNS])
    return buffer.getvalue()


# A text cell a spreadsheet would read as a formula (OWASP "CSV injection"): descriptions, agreement references
# and reasons are typed by people, some by customers (a customisation's agreement reference).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


@dataclass
class LedgerTotal:
    """What one customer's period adds up to: per currency, and how many extras still wait for a price."""

    customer_id: str
    period: int
    amounts: dict[str, Decimal] = field(default_factory=dict)
    priced: int = 0
    unpriced: int = 0

    @property
    def extras(self) -> int:
        return self.priced + self.unpriced


def ledger_totals(rows: Iterable[BillableExtraRow]) -> list[LedgerTotal]:
    """Totals per customer and period, in that order; amounts summed per currency."""
    totals: dict[tuple[str, int], LedgerTotal] = {}
    for row in rows:
        total = totals.setdefault((row.customer_id, row.period), LedgerTotal(row.customer_id, row.period))
        if row.amount is None or row.currency is None:
            total.unpriced += 1
            continue
        total.priced += 1
        total.amounts[row.currency] = total.amounts.get(row.currency, Decimal("0")) + row.amount
    return [totals[k] for k in sorted(totals)]


__all__ = ["LEDGER_COLUMNS", "UNPRICED", "LedgerTotal", "ledger_csv", "ledger_line", "ledger_totals", "plain",
           "plain_quantity"]
