"""The request's answer and resolution, one Update each: the first response (C12), pending and
resumed (A6), measures proposed, accepted or rejected, or the customer's written acceptance (A4),
and the priority agreed with the customer (A4)."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.request import (
        AcceptResolution,
        ChangePriority,
        Pend,
        Proposal,
        ProposeResolution,
        RecordWrittenAcceptance,
        RejectResolution,
        RequestState,
        RequestStatus,
        Respond,
        Resume,
    )
    from domain.rules_request import (
        check_accept,
        check_change_priority,
        check_pend,
        check_propose,
        check_reject,
        check_respond,
        check_resume,
        check_written_acceptance,
    )

from workflows.request_base import RequestBase
from workflows.update_sequence import refuse


class RequestResolution(RequestBase):
    @workflow.update
    async def respond(self, inp: Respond) -> RequestStatus:
        """Rule C12: the support rep's first response stops the clock (met or responded late)."""
        async with self._updates(lambda: check_respond(self._status, inp, self._tz)):
            # A deadline passed but not yet processed is recorded first, so events stay in order.
            await self._process_due_events()
            await self._first_response(inp.by, f"answered: {inp.message[:200]}")
            await self._into_thread(inp.by, inp.via, inp.message)
            self._record("respond", inp.by, inp.via, {"message": inp.message[:200]})
            return self._status

    @respond.validator
    def _validate_respond(self, inp: Respond) -> None:
        refuse(check_respond(self._status, inp, self._tz))

    @workflow.update
    async def pend(self, inp: Pend) -> RequestStatus:
        """Waiting for the customer (A6 'pending'), with the reason kept."""
        async with self._updates(lambda: check_pend(self._status, inp)):
            s = self._status
            s.pending_reason = inp.reason
            await self._set_state(RequestState.pending, inp.by, inp.reason)
            await self._into_thread(inp.by, inp.via, inp.reason)
            self._record("pend", inp.by, inp.via, {"reason": inp.reason[:200]})
            return s

    @pend.validator
    def _validate_pend(self, inp: Pend) -> None:
        refuse(check_pend(self._status, inp))

    @workflow.update
    async def resume(self, inp: Resume) -> RequestStatus:
        async with self._updates(lambda: check_resume(self._status, inp)):
            s = self._status
            reason = s.pending_reason
            s.pending_reason = None
            await self._set_state(RequestState.open, inp.by, inp.note or f"resumed (was pending: {reason})")
            self._record("resume", inp.by, inp.via, {"note": inp.note[:200]})
            return s

    @resume.validator
    def _validate_resume(self, inp: Resume) -> None:
        refuse(check_resume(self._status, inp))

    @workflow.update
    async def propose_resolution(self, inp: ProposeResolution) -> RequestStatus:
        """Rule A4: OT proposes measures; the request waits for the customer's answer (pending)."""
        async with self._updates(lambda: check_propose(self._status, inp, self._tz)):
            s = self._status
            await self._process_due_events()
            # Proposed measures answer the customer: a clock still running stops here (C12).
            await self._first_response(inp.by, "measures proposed")
            s.proposal = Proposal(measures=inp.measures, proposed_by=inp.by, proposed_at=workflow.now())
            s.pending_reason = "waiting for the customer to accept the proposed measures (A4)"
            await self._set_state(RequestState.pending, inp.by, f"measures proposed: {inp.measures}")
            await self._into_thread(inp.by, inp.via, f"Proposed measures: {inp.measures}")
            self._record("propose_resolution", inp.by, inp.via, {"measures": inp.measures[:200]})
            return s

    @propose_resolution.validator
    def _validate_propose_resolution(self, inp: ProposeResolution) -> None:
        refuse(check_propose(self._status, inp, self._tz))

    @workflow.update
    async def accept_resolution(self, inp: AcceptResolution) -> RequestStatus:
        """Rule A4: the customer accepts the measures OT proposed; the request closes."""
        async with self._updates(lambda: check_accept(self._status, inp)):
            s = self._status
            assert s.proposal is not None
            await self._close(inp.by, f"measures accepted by the customer ({inp.by}): {s.proposal.measures}")
            self._record("accept_resolution", inp.by, inp.via)
            return s

    @accept_resolution.validator
    def _validate_accept_resolution(self, inp: AcceptResolution) -> None:
        refuse(check_accept(self._status, inp))

    @workflow.update
    async def reject_resolution(self, inp: RejectResolution) -> RequestStatus:
        """The customer does not agree with the measures: back to open (A4)."""
        async with self._updates(lambda: check_reject(self._status, inp)):
            s = self._status
            s.proposal = None
            s.pending_reason = None
            await self._set_state(RequestState.open, inp.by, f"proposed measures rejected: {inp.reason}")
            await self._into_thread(inp.by, inp.via, f"Rejected the proposed measures: {inp.reason}", customer=True)
            self._record("reject_resolution", inp.by, inp.via, {"reason": inp.reason[:200]})
            return s

    @reject_resolution.validator
    def _validate_reject_resolution(self, inp: RejectResolution) -> None:
        refuse(check_reject(self._status, inp))

    @workflow.update
    async def record_written_acceptance(self, inp: RecordWrittenAcceptance) -> RequestStatus:
        """Rule A4: ops record the customer's written acceptance; the request closes."""
        async with self._updates(lambda: check_written_acceptance(self._status, inp)):
            await self._close(inp.by, f"customer's written acceptance {inp.reference}, recorded by {inp.by}")
            self._record("record_written_acceptance", inp.by, inp.via, {"reference": inp.reference})
            return self._status

    @record_written_acceptance.validator
    def _validate_record_written_acceptance(self, inp: RecordWrittenAcceptance) -> None:
        refuse(check_written_acceptance(self._status, inp))

    @workflow.update
    async def change_priority(self, inp: ChangePriority) -> RequestStatus:
        """Rule A4: the priority agreed with the customer changes; the status history keeps the change
        (same state, the note says from what to what and why)."""
        async with self._updates(lambda: check_change_priority(self._status, inp)):
            s = self._status
            was = s.priority
            s.priority = inp.priority
            await self._record_change(s.state, s.state, inp.by,
                                      f"priority {was.value} -> {inp.priority.value}: {inp.reason}")
            self._record("change_priority", inp.by, inp.via,
                         {"from": was.value, "to": inp.priority.value, "reason": inp.reason[:200]})
            return s

    @change_priority.validator
    def _validate_change_priority(self, inp: ChangePriority) -> None:
        refuse(check_change_priority(self._status, inp))
