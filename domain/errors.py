"""Refusals: one exception family, rooted at `RuleRefused`, for every "no" the service gives.

A refusal names the handbook rules it enforces (`violations`) when there are some, and always has a
`message` a person reads. Faces show it as they like (the CLI exits 2, the portal shows the form
again, the API answers 409); a face catches a subclass only when it must tell the cases apart.
"""

from __future__ import annotations

from pydantic import BaseModel

# The ApplicationError type a workflow gives a refused Update or signal. Saved histories and running
# clients already carry this string, so it stays "StepRefused" whatever the Python class is called.
REFUSAL_ERROR_TYPE = "StepRefused"


class RuleViolation(BaseModel):
    """One refused rule, e.g. ``RuleViolation(rule="C4", message="6 additional contacts ...")``."""

    rule: str
    message: str
    field: str | None = None

    def __str__(self) -> str:
        return f"rule {self.rule}: {self.message}"


class RuleRefused(ValueError):
    """The root of every refusal; carries every violation found, not only the first.

    `message` defaults to the violations joined ("rule C4: ...; rule C1: ..."); a refusal that names
    no rule (a subclass below) gives its message and no violations.
    """

    def __init__(self, violations: list[RuleViolation], message: str | None = None) -> None:
        if not violations and not message:
            raise ValueError("RuleRefused needs at least one violation or a message")
        self.violations = violations
        self.message = message if message is not None else "; ".join(str(v) for v in violations)
        super().__init__(self.message)

    @classmethod
    def single(cls, rule: str, message: str, field: str | None = None) -> RuleRefused:
        return cls([RuleViolation(rule=rule, message=message, field=field)])


class Refused(RuleRefused):
    """A check said no without a handbook rule of its own: a file that does not parse, an unknown step,
    a second programme for a customer."""

    def __init__(self, message: str, violations: list[RuleViolation] | None = None) -> None:
        super().__init__(violations or [], message)


class NotFound(Refused):
    """No such programme, request or live workflow (the portal shows "not found" instead of an error)."""


class UpdateRefused(Refused):
    """The workflow refused an Update: its validator, or its body under the lock.

    `error_type` is the failure's type: `REFUSAL_ERROR_TYPE` when the body refused (a re-check that
    lost a race), the exception's class name when the validator did.
    """

    def __init__(self, update: str, message: str, error_type: str | None = None) -> None:
        super().__init__(message)
        self.update = update
        self.error_type = error_type

    @property
    def refused_by_body(self) -> bool:
        return self.error_type == REFUSAL_ERROR_TYPE


class EnrolmentRefused(RuleRefused):
    """The enrolment checks (rules C1, C2, C4, E1 ...) refused a programme before it started.

    `message` is the headline a form shows above the fields; `str()` lists every rule, one a line.
    """

    def __init__(self, violations: list[RuleViolation]) -> None:
        super().__init__(violations, "enrolment refused")

    def __str__(self) -> str:
        return "enrolment refused:\n" + "\n".join(
            f"  rule {v.rule}{f' ({v.field})' if v.field else ''}: {v.message}" for v in self.violations)
