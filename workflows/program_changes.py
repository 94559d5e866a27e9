"""Changes to a running programme, one Update each: another Technical Lead (C7), a new contact (C4),
a billable extra (C3), the next period's price (C14, C15), another follow-up frequency (C10), a
non-renewal notice (C16) and the renewal invoice paid (C14)."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.activities import OpenRequestsQuery
    from domain.money import price_increase_percent
    from domain.naming import request_workflow_id
    from domain.program import NonRenewal, Phase, ProgramStatus
    from domain.renewal import price_rise_reason
    from domain.rules_cycle import check_call_frequency_change, replan_cycles
    from domain.rules_program import (
        check_invoice_paid,
        check_new_contact,
        check_non_renewal_notice,
        check_reassignment,
        check_renewal_proposal,
    )
    from domain.step_inputs import (
        AddContact,
        AgreeCallFrequency,
        BillableExtraKind,
        GiveNonRenewalNotice,
        ProposeRenewalPrice,
        ReassignTechnicalLead,
        RecordBillableExtra,
        RecordInvoicePaid,
        TechnicalLeadChanged,
    )
    from workflows import activity_calls as act

from workflows.program_base import PATCH_REASSIGN_RUNNING_WORK, ProgramBase, iso
from workflows.update_sequence import refuse


class ProgramChanges(ProgramBase):
    @workflow.update
    async def reassign_technical_lead(self, inp: ReassignTechnicalLead) -> ProgramStatus:
        """Rule C7: OT may assign a different TL; history keeps who did what; contacts are told."""
        async with self._updates():
            s = self._status
            previous = s.technical_lead
            s.technical_lead = inp.technical_lead
            s.technical_lead_history.append(inp.technical_lead.id)
            self._record("reassign_technical_lead", inp.by, {"from": previous.id, "to": inp.technical_lead.id,
                                                              "reason": inp.reason}, interface=inp.via)
            n = len(s.technical_lead_history)
            await self._mail_contacts("tl_reassigned", f"tl-reassigned-{n}", {
                "previous_technical_lead": previous.model_dump(mode="json"),
                "technical_lead": inp.technical_lead.model_dump(mode="json"), "reason": inp.reason,
            }, cc=[previous.email, inp.technical_lead.email])
            await self._mail_tl_assignment(f"tl-assignment-{n}")
            if workflow.patched(PATCH_REASSIGN_RUNNING_WORK):
                await self._hand_over_running_work(TechnicalLeadChanged(
                    technical_lead=inp.technical_lead, previous_id=previous.id, by=inp.by, via=inp.via,
                    reason=inp.reason))
            return s

    async def _hand_over_running_work(self, change: TechnicalLeadChanged) -> None:
        """Rule C7: the running monthly cycles and the open requests take the new TL: their reminders,
        SLA warnings and search attribute (the TL inbox) from now on."""
        s = self._status
        running = [c.workflow_id for c in s.cycles if c.status == "running"]
        found = await act.list_open_requests(OpenRequestsQuery(customer_id=s.customer_id),
                                             summary="Open requests the new TL takes over (C7)")
        for workflow_id in running + [request_workflow_id(n) for n in found.tracking_numbers]:
            await self._tell_technical_lead_changed(workflow_id, change)

    @reassign_technical_lead.validator
    def _validate_reassign_technical_lead(self, inp: ReassignTechnicalLead) -> None:
        refuse(self._live())
        refuse(check_reassignment(self._status, inp))

    @workflow.update
    async def add_contact(self, inp: AddContact) -> ProgramStatus:
        async with self._updates():
            s = self._status
            s.contacts.append(inp.contact)
            self._record("add_contact", inp.by, {"email": inp.contact.email}, interface=inp.via)
            if self._total_contacts() > self._input.policy.max_total_contacts:
                await self._add_extra(RecordBillableExtra(
                    by=inp.by, kind=BillableExtraKind.extra_contacts, agreement_ref=inp.agreement_ref or "",
                    description=f"Contact {inp.contact.email} beyond {self._input.policy.max_total_contacts} "
                                f"(C4, SMPH section 6)"))
            await self._mail([inp.contact.email], "contact_added", f"contact-added:{inp.contact.email}",
                             {"contact": inp.contact.model_dump(mode="json")}, cc=[s.technical_lead.email])
            return s

    @add_contact.validator
    def _validate_add_contact(self, inp: AddContact) -> None:
        refuse(self._live())
        refuse(check_new_contact(self._status, inp, self._subscription_contacts, self._input.policy))

    @workflow.update
    async def record_billable_extra(self, inp: RecordBillableExtra) -> ProgramStatus:
        async with self._updates():
            await self._add_extra(inp)
            return self._status

    @record_billable_extra.validator
    def _validate_record_billable_extra(self, inp: RecordBillableExtra) -> None:
        refuse(self._live())
        refuse(self._payload_rules(inp))

    @workflow.update
    async def propose_renewal_price(self, inp: ProposeRenewalPrice) -> ProgramStatus:
        async with self._updates():
            s = self._status
            assert s.renewal is not None
            s.renewal.next_price = inp.price
            # rule C15: the rise and its reason are recorded with the price.
            s.renewal.price_rise_percent = price_increase_percent(s.annual_fee, inp.price)
            s.renewal.price_rise_reason = price_rise_reason(s.annual_fee, inp.price, inp.reason, None)
            self._record("propose_renewal_price", inp.by, {"price": str(inp.price),
                                                            "reason": s.renewal.price_rise_reason}, interface=inp.via)
            return self._status

    @propose_renewal_price.validator
    def _validate_propose_renewal_price(self, inp: ProposeRenewalPrice) -> None:
        refuse(self._live())
        refuse(check_renewal_proposal(self._status, inp.price, self._input.policy))

    @workflow.update
    async def agree_call_frequency(self, inp: AgreeCallFrequency) -> ProgramStatus:
        """Rule C10: a follow-up cycle every `months` months from the coming months on; the cycles started
        stay as they are, the next period keeps the agreement (`ProgramBase._agreed_call_frequency`)."""
        async with self._updates(lambda: check_call_frequency_change(self._status, inp, self._period_over)):
            s = self._status
            assert s.plan is not None
            previous = s.call_frequency_months
            s.call_frequency_months, s.call_frequency_agreement_ref = inp.months, inp.agreement_ref.strip()
            s.cycles = replan_cycles(s.cycles, s.customer_id, s.period, s.plan, inp.months)
            self._record("agree_call_frequency", inp.by, {"from_months": previous, "months": inp.months,
                                                           "agreement_ref": s.call_frequency_agreement_ref,
                                                           "reason": inp.reason}, interface=inp.via)
            return s

    @agree_call_frequency.validator
    def _validate_agree_call_frequency(self, inp: AgreeCallFrequency) -> None:
        refuse(check_call_frequency_change(self._status, inp, self._period_over))

    @workflow.update
    async def give_non_renewal_notice(self, inp: GiveNonRenewalNotice) -> ProgramStatus:
        """Rule C16: accepted up to and including the deadline day; later is refused as late."""
        async with self._updates():
            s = self._status
            assert s.renewal is not None and s.plan is not None
            s.renewal.non_renewal = NonRenewal(party=inp.party, received_on=inp.received_on,
                                               reference=inp.reference, recorded_by=inp.by,
                                               recorded_at=workflow.now())
            s.phase = Phase.closing
            self._record("give_non_renewal_notice", inp.by, inp.model_dump(mode="json", exclude={"via"}),
                         interface=inp.via)
            ctx = {"party": inp.party, "received_on": iso(inp.received_on), "reference": inp.reference,
                   "period_end": iso(s.plan.period_end)}
            doc = await self._file("non_renewal_notice", "non_renewal_notice", "Non-renewal notice", ctx)
            await self._mail_contacts("non_renewal_accepted", "non-renewal-accepted", ctx,
                                      cc=[s.technical_lead.email, self._input.policy.ops_mailbox],
                                      attach_document_id=doc)
            return s

    @give_non_renewal_notice.validator
    def _validate_give_non_renewal_notice(self, inp: GiveNonRenewalNotice) -> None:
        refuse(self._live())
        refuse(check_non_renewal_notice(self._status, inp, workflow.now()))

    @workflow.update
    async def record_renewal_invoice_paid(self, inp: RecordInvoicePaid) -> ProgramStatus:
        # Checked again under the lock: two payments of one invoice may both pass the validator.
        async with self._updates(lambda: check_invoice_paid(self._status, inp.invoice_ref, inp.paid_on,
                                                            workflow.now().date())):
            s = self._status
            assert s.renewal is not None
            # rule C14: the invoice issued with this period's notice, or the one carried that pays this period.
            for invoice in (s.renewal.invoice, s.period_invoice):
                if invoice is not None and invoice.number == inp.invoice_ref.strip():
                    invoice.paid_on = inp.paid_on
            if s.period_invoice is None or s.period_invoice.number != inp.invoice_ref.strip():
                s.renewal.invoice_ref = inp.invoice_ref
                s.renewal.invoice_paid_on = inp.paid_on
            self._record("record_renewal_invoice_paid", inp.by, inp.model_dump(mode="json", exclude={"via"}),
                         interface=inp.via)
            return self._status

    @record_renewal_invoice_paid.validator
    def _validate_record_renewal_invoice_paid(self, inp: RecordInvoicePaid) -> None:
        refuse(self._live())
        refuse(check_invoice_paid(self._status, inp.invoice_ref, inp.paid_on, workflow.now().date()))
