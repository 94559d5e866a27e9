"""The `complete_step` signal route shared by the three workflows (docs/design.md "How people talk to workflows").

For tools that can only signal (the Temporal UI's signal form, webhooks): `{step, by, payload}` goes
through the same pydantic model and the same validator as the Update named `step`, then the Update's
own body runs. Whatever is refused (unknown step, bad payload, a validator's or the body's re-check's
refusal) is returned as a reason for the workflow to keep and mail: a person's mistake never fails a
workflow (an exception escaping a signal handler would fail the run).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ValidationError
from temporalio import workflow
from temporalio.exceptions import ApplicationError

from domain.enrolment import TechnicalLead
from domain.policy import ProgramPolicy
from domain.step_inputs import CompleteStepSignal, Rejection
from domain.steps import Workflow, signal_steps, steps_of

# step -> (the Update's model, its validator, the Update method itself: the SDK types it as its own
# UpdateMethodMultiParam, callable on the instance like the plain coroutine method it wraps).
StepHandlers = dict[str, tuple[type[BaseModel], Callable[[Any], None], Any]]
# The workflow's `_mail(to, template, purpose, context)`.
Mailer = Callable[[list[str], str, str, dict[str, Any]], Awaitable[None]]


async def run_step(handlers: StepHandlers, step: str, by: str, payload: dict[str, Any]) -> str | None:
    """Run the step's Update body if its model and validator accept the payload; else the refusal."""
    entry = handlers.get(step)
    if entry is None:
        return f"unknown step {step!r}; known steps: {', '.join(sorted(handlers))}"
    model, validate, body = entry
    try:
        inp = model.model_validate({**payload, "by": by, "via": "signal"})
        validate(inp)
    except ValidationError as err:
        return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
    except ValueError as err:
        return str(err)
    try:
        await body(inp)
    except ApplicationError as err:  # the body's re-check under the lock (two steps raced)
        return err.message
    return None


def step_handlers(instance: object, workflow: Workflow) -> StepHandlers:
    """The `complete_step` table, from the step registry: each step's model, its Update's validator
    (`_validate_<step>`) and the Update method itself."""
    return {s.name: (s.payload, getattr(instance, f"_validate_{s.name}"), getattr(instance, s.name))
            for s in signal_steps(workflow)}


def check_registry(cls: type, workflow: Workflow) -> None:
    """At import: every step the registry gives this workflow has its Update and validator."""
    missing = [name for s in steps_of(workflow) for name in (s.name, f"_validate_{s.name}")
               if not callable(getattr(cls, name, None))]
    if missing:
        raise TypeError(f"{cls.__name__} lacks {', '.join(missing)} named in domain/steps.py")


def rejection_recipient(by: str, technical_lead: TechnicalLead, policy: ProgramPolicy) -> str:
    """Who hears of a refused signal: the TL when the TL sent it, else operations (who run the tools)."""
    return technical_lead.email if by == technical_lead.id else policy.ops_mailbox


async def keep_and_mail_rejection(rejections: list[Rejection], sig: CompleteStepSignal, reason: str,
                                  technical_lead: TechnicalLead, policy: ProgramPolicy, mail: Mailer) -> None:
    """A refused signal is kept in the state and mailed (its purpose numbers it, so a retry mails once)."""
    rejections.append(Rejection(at=workflow.now(), step=sig.step, by=sig.by, reason=reason))
    to = [rejection_recipient(sig.by, technical_lead, policy)]
    await mail(to, "step_rejected", f"rejected:{len(rejections)}", {"step": sig.step, "reason": reason, "by": sig.by})
