"""On-site dispatch (A4), one Update each: requested with its reason, estimated cost and agreement
(C3); approved by the customer and by an OT support manager, each within its deadline in business
days; then booked (activity) and the visit recorded as a billable extra."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.activities import DeadlineItem, DeadlineRequest, DispatchBookingRequest
    from domain.program import BillableExtra
    from domain.request import (
        ApproveDispatch,
        Dispatch,
        DispatchState,
        RecordVisit,
        RequestDispatch,
        RequestStatus,
    )
    from domain.rules_request import check_approve_dispatch, check_request_dispatch, check_visit, current_dispatch
    from domain.step_inputs import EXTRA_RULES, BillableExtraKind
    from workflows import activity_calls as act

from workflows.request_base import RequestBase
from workflows.update_sequence import refuse


class RequestDispatchSteps(RequestBase):
    def _current_dispatch(self) -> tuple[int, Dispatch]:
        # Only after the re-check, which refuses when no dispatch was requested.
        current = current_dispatch(self._status)
        assert current is not None
        return current

    @workflow.update
    async def request_dispatch(self, inp: RequestDispatch) -> RequestStatus:
        """Rule A4: on-site support at extra cost, with an agreement (C3); both parties approve in time."""
        async with self._updates(lambda: check_request_dispatch(self._status, inp)):
            s = self._status
            i = self._input
            p = i.policy
            now = workflow.now()
            n = len(s.dispatches) + 1
            today = self._local_date(now)
            sched = await act.schedule_deadlines(
                DeadlineRequest(calendar=i.calendar, reminder_business_days=0, items=[
                    DeadlineItem(key="customer", business_days_from=today,
                                 business_days=p.dispatch_customer_approval_business_days),
                    DeadlineItem(key="manager", business_days_from=today,
                                 business_days=p.dispatch_manager_approval_business_days),
                ]),
                summary=f"Approval deadlines of dispatch #{n} (A4, business days)",
            )
            due = {d.key: d.due_at for d in sched.items}
            s.dispatches.append(Dispatch(
                reason=inp.reason, estimated_cost=inp.estimated_cost, agreement_ref=inp.agreement_ref,
                requested_by=inp.by, requested_at=now, customer_approval_due_at=due["customer"],
                manager_approval_due_at=due["manager"]))
            await self._record_dispatch(n)
            await self._mail([c.email for c in i.contacts] or [i.policy.ops_mailbox], "dispatch_requested",
                             f"dispatch-{n}-requested", {"dispatch": self._dispatch_context(n)},
                             cc=[i.policy.support_manager_mailbox, i.technical_lead.email])
            self._record("request_dispatch", inp.by, inp.via, {
                "dispatch": n, "reason": inp.reason[:200], "agreement_ref": inp.agreement_ref,
                "estimated_cost": inp.estimated_cost.model_dump(mode="json")})
            return s

    @request_dispatch.validator
    def _validate_request_dispatch(self, inp: RequestDispatch) -> None:
        refuse(check_request_dispatch(self._status, inp))

    @workflow.update
    async def approve_dispatch(self, inp: ApproveDispatch) -> RequestStatus:
        """Rule A4: the customer (accepts the extra cost) and an OT support manager approve."""
        async with self._updates(lambda: check_approve_dispatch(self._status, inp, workflow.now(), self._tz)):
            s = self._status
            i = self._input
            n, d = self._current_dispatch()
            now = workflow.now()
            if inp.party == "customer":
                d.customer_approved_by, d.customer_approved_at = inp.by, now
            else:
                d.manager_approved_by, d.manager_approved_at = inp.by, now
            if d.customer_approved_at is not None and d.manager_approved_at is not None:
                d.state = DispatchState.approved
                await self._record_dispatch(n)
                booking = await act.book_dispatch(
                    DispatchBookingRequest(tracking_number=s.tracking_number, customer_id=s.customer_id,
                                           customer_name=i.customer_name, seq=n, dispatch=d,
                                           idempotency_key=self._key(f"dispatch-{n}:booking"), at=now),
                    summary=f"Book the on-site visit of dispatch #{n} (A4)",
                )
                d.engineer, d.engineer_email, d.booking_ref = (booking.engineer, booking.engineer_email,
                                                               booking.booking_ref)
                d.state = DispatchState.booked
                await self._record_dispatch(n)
                ctx = {"dispatch": self._dispatch_context(n)}
                await self._mail([booking.engineer_email], "dispatch_booked", f"dispatch-{n}-booked-engineer",
                                 {**ctx, "audience": "engineer"}, cc=[i.technical_lead.email])
                await self._mail([c.email for c in i.contacts] or [i.policy.ops_mailbox], "dispatch_booked",
                                 f"dispatch-{n}-booked-contacts", {**ctx, "audience": "contacts"},
                                 cc=[i.technical_lead.email])
            else:
                await self._record_dispatch(n)
            self._record("approve_dispatch", inp.by, inp.via, {"dispatch": n, "party": inp.party})
            return s

    @approve_dispatch.validator
    def _validate_approve_dispatch(self, inp: ApproveDispatch) -> None:
        refuse(check_approve_dispatch(self._status, inp, workflow.now(), self._tz))

    @workflow.update
    async def record_visit(self, inp: RecordVisit) -> RequestStatus:
        """Rule A4: the visit took place; its cost becomes a billable extra with its agreement (C3)."""
        async with self._updates(lambda: check_visit(self._status, inp, self._tz)):
            s = self._status
            n, d = self._current_dispatch()
            d.visit_on, d.visit_notes, d.state = inp.visit_on, inp.notes, DispatchState.visited
            kind = BillableExtraKind.on_site_dispatch
            extra = BillableExtra(
                kind=kind, rule=EXTRA_RULES[kind],
                description=(f"On-site dispatch #{n} for request {s.tracking_number} on {inp.visit_on} "
                             f"({d.engineer or 'engineer'}, booking {d.booking_ref}): {d.reason}"),
                agreement_ref=d.agreement_ref, amount=inp.actual_cost or d.estimated_cost,
                # rule C3: the dispatch's agreed cost overrides the list price; the ledger says why.
                override_reason="actual cost of the visit (A4)" if inp.actual_cost else
                "estimated cost approved by the customer and the manager (A4)",
                recorded_at=workflow.now(), recorded_by=inp.by)
            await self._record_extra(extra, f"dispatch-{n}:extra",
                                     f"Billable extra: on-site dispatch #{n}, {extra.amount} (A4, C3)")
            await self._record_dispatch(n)
            self._record("record_visit", inp.by, inp.via, {"dispatch": n, "visit_on": inp.visit_on.isoformat(),
                                                           "amount": extra.amount.model_dump(mode="json")
                                                           if extra.amount else None})
            return s

    @record_visit.validator
    def _validate_record_visit(self, inp: RecordVisit) -> None:
        refuse(check_visit(self._status, inp, self._tz))
