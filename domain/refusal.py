"""How a workflow words a refusal, from the violations the rule functions return.

Rule functions (`domain/rules_*.py`) return `RuleViolation`s. Most name a handbook rule and read
"rule C4: ..." (`str(violation)`). Some refusals name no rule of their own, or word it themselves
("step add_findings is already done", "... the next period's price is fixed (C14)"): their rule is
`PLAIN` and their message is the whole reason. Running clients and saved histories carry these
texts, so they stay word for word what the workflows always said.
"""

from __future__ import annotations

from datetime import datetime

from domain.errors import RuleViolation

PLAIN = "-"


def plain(message: str, field: str | None = None) -> RuleViolation:
    """A refusal worded in full by its message (a state check, a malformed value)."""
    return RuleViolation(rule=PLAIN, message=message, field=field)


def violation(rule: str, message: str, field: str | None = None) -> RuleViolation:
    return RuleViolation(rule=rule, message=message, field=field)


def needs_offset(value: datetime, field: str, example: str) -> list[RuleViolation]:
    """A meeting or call is booked as an instant: a time without an offset names none."""
    if value.tzinfo is None:
        return [plain(f"{field} needs a time zone offset (e.g. {example})", field)]
    return []


def refusal_text(violations: list[RuleViolation]) -> str:
    """The reason a workflow gives (validator, re-check, rejected signal): every violation, in order."""
    return "; ".join(v.message if v.rule == PLAIN else str(v) for v in violations)
