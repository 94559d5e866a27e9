"""The renewal paperwork of a period (rules C14, C15, C16, E1): the renewal notice with the next price and
the renewal invoice, then the customer's deadline reminder, the unpaid-invoice escalation, and the
maintenance subscription checked against the next period ahead of the end.

Runs planned before the paperwork (their recorded PeriodPlan has no `invoice_due_on`) keep the earlier
sequence: notice without invoice, reminder on its own date, no checks ahead. The plan is in history, so
replay takes the same branch the run took (`_paperwork_planned`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.activities import EnrolmentCheckRequest
    from domain.enrolment import Enrolment
    from domain.money import price_increase_percent
    from domain.program import MaintenanceCheck, Phase
    from domain.renewal import RenewalInvoice, price_rise_reason, renewal_invoice
    from domain.step_inputs import BillableExtraKind
    from workflows import activity_calls as act

from workflows.program_base import ProgramBase, iso


class ProgramRenewal(ProgramBase):
    def _paperwork_planned(self) -> bool:
        plan = self._status.plan
        return plan is not None and plan.invoice_due_on is not None

    def _renewal_event_ats(self) -> list[datetime]:
        """The renewal events still to come, for the main loop's next wake-up."""
        s = self._status
        assert s.plan is not None and s.renewal is not None
        out: list[datetime] = []
        if not s.renewal.notice_sent:
            out.append(s.plan.renewal_notice_at)
        if not s.renewal.reminder_sent:
            out.append(s.plan.non_renewal_reminder_at)
        invoice = s.renewal.invoice
        if invoice is not None and not invoice.paid and not invoice.escalated and s.plan.invoice_escalation_at:
            out.append(s.plan.invoice_escalation_at)
        warnings = s.plan.maintenance_warning_ats or []
        if len(s.renewal.maintenance_checks) < len(warnings):
            out.append(warnings[len(s.renewal.maintenance_checks)])
        return out

    async def _process_renewal_events(self, now: datetime) -> None:
        s = self._status
        assert s.plan is not None and s.renewal is not None
        await self._check_maintenance_ahead(now)
        if not s.renewal.notice_sent and now >= s.plan.renewal_notice_at:
            await self._send_renewal_notice(stale=self._is_stale(s.plan.renewal_notice_at))
        if not s.renewal.reminder_sent and now >= s.plan.non_renewal_reminder_at:
            await self._send_deadline_reminder(now)
        await self._escalate_unpaid_invoice(now)

    # ------------------------------------------------------------ C14, C15: notice and invoice
    async def _send_renewal_notice(self, stale: bool) -> None:
        """Rule C14: renewal notice before the non-renewal deadline, with the next price (C15) and, since the
        paperwork, the renewal invoice attached and filed."""
        s = self._status
        assert s.plan is not None and s.renewal is not None
        r = s.renewal
        r.notice_sent = True
        if r.next_price is None:
            r.next_price = self._default_next_price()
        if s.phase in (Phase.onboarding, Phase.running):
            s.phase = Phase.renewal
        self._dirty = True
        paperwork = self._paperwork_planned()
        if paperwork and r.price_rise_reason is None:
            # rule C15: the rise and its reason are recorded (a proposal may have given its own reason).
            r.price_rise_percent = price_increase_percent(s.annual_fee, r.next_price)
            r.price_rise_reason = price_rise_reason(s.annual_fee, r.next_price, None,
                                                    self._input.enrolment.renewal_price_increase_percent)
        if r.non_renewal is not None:
            return
        if not paperwork:
            if stale:
                return
            ctx = self._notice_context()
            doc = await self._file("renewal_notice", "renewal_notice", f"Renewal notice, period {s.period + 1}", ctx)
            await self._mail_contacts("renewal_notice", "renewal-notice", ctx, cc=[self._input.policy.ops_mailbox],
                                      attach_document_id=doc)
            return
        invoice = self._renewal_invoice()
        ctx = self._notice_context() | {"invoice": invoice.model_dump(mode="json")}
        await self._file("renewal_notice", "renewal_notice", f"Renewal notice, period {s.period + 1}", ctx)
        invoice.document_id = await self._file("renewal_invoice", "renewal_invoice",
                                               f"Renewal invoice {invoice.number}", ctx)
        r.invoice = invoice
        r.invoice_ref = invoice.number
        self._record("renewal_invoice_issued", "system", {"number": invoice.number, "total": str(invoice.total),
                                                           "due_on": iso(invoice.due_on)})
        if not stale:
            await self._mail_contacts("renewal_notice", "renewal-notice", ctx, cc=[self._input.policy.ops_mailbox],
                                      attach_document_id=invoice.document_id)

    def _notice_context(self) -> dict[str, object]:
        s = self._status
        assert s.plan is not None and s.renewal is not None and s.renewal.next_price is not None
        return {"period_end": iso(s.plan.period_end), "current_price": s.annual_fee.model_dump(mode="json"),
                "next_price": s.renewal.next_price.model_dump(mode="json"),
                "non_renewal_deadline": iso(s.renewal.non_renewal_deadline),
                "price_rise_reason": s.renewal.price_rise_reason}

    def _renewal_invoice(self) -> RenewalInvoice:
        s = self._status
        assert s.plan is not None and s.renewal is not None and s.renewal.next_price is not None
        assert s.plan.invoice_due_on is not None
        e = self._input.enrolment
        next_start = s.plan.period_end + timedelta(days=1)
        return renewal_invoice(s.customer_id, s.period + 1, s.renewal.next_price,
                               issued_on=s.plan.renewal_notice_on, due_on=s.plan.invoice_due_on,
                               period_start=next_start,
                               period_end=e.model_copy(update={"period_start": next_start}).period_end)

    # ------------------------------------------------------------ C16: the customer's deadline reminder
    async def _send_deadline_reminder(self, now: datetime) -> None:
        """Rule C16: the reminder of the non-renewal deadline; since the paperwork, after the notice (the plan
        puts it after) and only while the deadline is still ahead."""
        s = self._status
        assert s.plan is not None and s.renewal is not None
        if self._paperwork_planned() and not s.renewal.notice_sent:
            return  # the notice first; the next wake-up sends both in order
        s.renewal.reminder_sent = True
        self._dirty = True
        if s.renewal.non_renewal is not None or self._is_stale(s.plan.non_renewal_reminder_at):
            return
        if self._paperwork_planned() and now >= s.plan.non_renewal_deadline_end_at:
            return
        await self._mail_contacts("non_renewal_reminder", "non-renewal-reminder", {
            "non_renewal_deadline": iso(s.renewal.non_renewal_deadline),
            "period_end": iso(s.plan.period_end),
        })

    # ------------------------------------------------------------ C14: an unpaid invoice
    async def _escalate_unpaid_invoice(self, now: datetime) -> None:
        s = self._status
        assert s.plan is not None and s.renewal is not None
        invoice = s.renewal.invoice
        at = s.plan.invoice_escalation_at
        if invoice is None or invoice.paid or invoice.escalated or at is None or now < at:
            return
        invoice.escalated = True
        self._record("renewal_invoice_escalated", "system", {"number": invoice.number})
        if s.renewal.non_renewal is not None or self._is_stale(at):
            return
        await self._mail([self._input.policy.ops_mailbox], "renewal_invoice_unpaid", f"invoice-unpaid:{invoice.number}",
                         {"invoice": invoice.model_dump(mode="json"), "period_end": iso(s.plan.period_end),
                          "starts_unpaid": self._input.policy.next_period_starts_unpaid},
                         cc=[s.technical_lead.email])

    # ------------------------------------------------------------ E1 ahead of time
    async def _check_maintenance_ahead(self, now: datetime) -> None:
        """Rule E1: the subscription is checked against the next period before the end, so the close at the end
        is never a surprise: ops and the TL are told at each check that finds it does not cover the period."""
        s = self._status
        assert s.plan is not None and s.renewal is not None
        warnings = s.plan.maintenance_warning_ats or []
        n = len(s.renewal.maintenance_checks)
        if n >= len(warnings) or now < warnings[n]:
            return
        if s.renewal.non_renewal is not None:
            s.renewal.maintenance_checks.append(MaintenanceCheck(at=now, covered=False,
                                                                 detail="not checked: non-renewal notice given"))
            self._dirty = True
            return
        next_enrolment = self._next_enrolment()
        check = await act.check_enrolment(
            EnrolmentCheckRequest(enrolment=next_enrolment, policy=self._input.policy, period=s.period + 1),
            summary=f"Maintenance check {n + 1} ahead of the period end, for period {s.period + 1} (E1)",
        )
        detail = "; ".join(str(v) for v in check.violations) or "covered"
        s.renewal.maintenance_checks.append(MaintenanceCheck(at=now, covered=not check.violations, detail=detail))
        self._record("maintenance_checked_ahead", "system", {"check": n + 1, "detail": detail})
        if not check.violations or self._is_stale(warnings[n]):
            return
        await self._mail([self._input.policy.ops_mailbox, s.technical_lead.email], "maintenance_lapse_warning",
                         f"maintenance-warning-{n + 1}",
                         {"period_end": iso(s.plan.period_end), "next_period": s.period + 1, "detail": detail,
                          "technical_lead": s.technical_lead.model_dump(mode="json"), "check": n + 1,
                          "maintenance_subscription_id": next_enrolment.customer.maintenance_subscription_id})

    def _next_enrolment(self) -> Enrolment:
        """The next period's enrolment: same file from the day after the end, the renewal price, the current TL
        and contacts (the first stays primary)."""
        s = self._status
        e = self._input.enrolment
        assert s.plan is not None and s.renewal is not None
        next_fee = s.renewal.next_price or self._default_next_price()
        # rule C4: contacts over fifteen carry over with the agreement they were accepted under (in the file or
        # on `add_contact`), so the next period bills them as this one did.
        contacts_agreement = e.extra_contacts_agreement_ref or next(
            (x.agreement_ref for x in reversed(s.extras) if x.kind == BillableExtraKind.extra_contacts), None)
        return e.model_copy(update={
            "accept_extra_contact_fees": e.accept_extra_contact_fees or contacts_agreement is not None,
            "extra_contacts_agreement_ref": contacts_agreement,
            "period_start": s.plan.period_end + timedelta(days=1), "annual_fee": next_fee,
            "technical_lead": s.technical_lead,
            "primary_contact": s.contacts[0] if s.contacts and e.primary_contact else e.primary_contact,
            "additional_contacts": s.contacts[1:] if e.primary_contact else s.contacts,
            **self._agreed_call_frequency(),  # rule C10: an agreement changed during the period carries over
        })
