"""Rule refusals: one exception type that names the handbook rule it enforces."""

from __future__ import annotations

from pydantic import BaseModel


class RuleViolation(BaseModel):
    """One refused rule, e.g. ``RuleViolation(rule="C4", message="6 additional contacts ...")``."""

    rule: str
    message: str
    field: str | None = None

    def __str__(self) -> str:
        return f"rule {self.rule}: {self.message}"


class RuleRefused(ValueError):
    """Raised by domain checks; carries every violation found, not only the first."""

    def __init__(self, violations: list[RuleViolation]) -> None:
        if not violations:
            raise ValueError("RuleRefused needs at least one violation")
        self.violations = violations
        super().__init__("; ".join(str(v) for v in violations))

    @classmethod
    def single(cls, rule: str, message: str, field: str | None = None) -> RuleRefused:
        return cls([RuleViolation(rule=rule, message=message, field=field)])
