"""The one mapping from what Temporal and pydantic raise to our refusals (domain/errors.py).

Every face calls Temporal through starter/, so a refused Update reads the same in the CLI
("<update> refused: <reason>", exit 2), the portal (the form's top error) and the API (409).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from pydantic import ValidationError
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from domain.errors import REFUSAL_ERROR_TYPE, Refused, RuleRefused, UpdateRefused

T = TypeVar("T")

__all__ = ["REFUSAL_ERROR_TYPE", "parse_model", "temporal_refusals", "update_refusal"]


def update_refusal(update: str, exc: WorkflowUpdateFailedError) -> UpdateRefused:
    """A failed Update as a refusal: the validator's or the body's (`REFUSAL_ERROR_TYPE`) reason."""
    cause = exc.cause
    return UpdateRefused(update, f"{update} refused: {getattr(cause, 'message', None) or cause or exc}",
                         getattr(cause, "type", None))


@contextlib.contextmanager
def temporal_refusals(
    *, update: str = "update",
    missing: Callable[[], RuleRefused] | None = None,
    missing_statuses: tuple[RPCStatusCode, ...] = (RPCStatusCode.NOT_FOUND,),
    already_started: Callable[[], RuleRefused] | None = None,
) -> Iterator[None]:
    """Temporal's errors inside the block raised as refusals.

    A failed Update becomes `UpdateRefused`; an RPC error whose status is in `missing_statuses`
    becomes `missing()` (the workflow does not exist, or its run has completed); a second start of a
    workflow ID becomes `already_started()`. Anything else (Temporal unreachable ...) passes through.
    """
    try:
        yield
    except WorkflowUpdateFailedError as exc:
        raise update_refusal(update, exc) from None
    except WorkflowAlreadyStartedError:
        if already_started is None:
            raise
        raise already_started() from None
    except RPCError as exc:
        if missing is None or exc.status not in missing_statuses:
            raise
        raise missing() from None


def parse_model(model: type[T], data: Any, source: str) -> T:
    """`data` as `model`, or a refusal naming every invalid field."""
    try:
        return model.model_validate(data)  # type: ignore[attr-defined, no-any-return]
    except ValidationError as exc:
        lines = [f"  field {'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()]
        raise Refused(f"{source} is not valid:\n" + "\n".join(lines)) from None
