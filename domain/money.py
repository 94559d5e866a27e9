"""Amounts of money and the renewal price cap (rule C15)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from pydantic import BaseModel, Field

from domain.errors import RuleRefused


class Money(BaseModel):
    amount: Decimal = Field(ge=0, decimal_places=2)
    currency: str = Field(default="EUR", min_length=3, max_length=3)

    def __str__(self) -> str:
        return f"{self.amount:,.2f} {self.currency}"


def price_increase_percent(current: Money, proposed: Money) -> Decimal:
    if current.amount == 0:
        return Decimal("0") if proposed.amount == 0 else Decimal("Infinity")
    return (proposed.amount - current.amount) * 100 / current.amount


def check_renewal_price(current: Money, proposed: Money, max_increase_percent: Decimal) -> None:
    """Rule C15: OT may raise the price by at most 10 % a year."""
    if proposed.currency != current.currency:
        raise RuleRefused.single(
            "C15", f"renewal price currency {proposed.currency} differs from the current {current.currency}",
            "price.currency",
        )
    rise = price_increase_percent(current, proposed)
    if rise > max_increase_percent:
        cap = (current.amount * (100 + max_increase_percent) / 100).quantize(Decimal("0.01"), ROUND_HALF_UP)
        raise RuleRefused.single(
            "C15",
            f"renewal price {proposed} is {rise.quantize(Decimal('0.01'))} % above the current {current}; "
            f"at most {max_increase_percent} % is allowed (cap {cap} {current.currency})",
            "price.amount",
        )


def raised_price(current: Money, percent: Decimal) -> Money:
    amount = (current.amount * (100 + percent) / 100).quantize(Decimal("0.01"), ROUND_HALF_UP)
    return Money(amount=amount, currency=current.currency)
