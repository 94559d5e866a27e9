"""What every part of ProgramWorkflow shares: its state, the audit log, and the side effects
(documents, mails, billable extras, saving the state, publishing it to the Temporal UI).

ProgramWorkflow (workflows/program.py) is assembled from this base and three parts that each tell
one side of the programme: the timed events (program_timing.py), the onboarding steps
(program_steps.py) and the changes of a running programme (program_changes.py).
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate
from temporalio.exceptions import ActivityError, FailureError

with workflow.unsafe.imports_passed_through():
    from domain.activities import (
        AuditEntry,
        ExtraRecord,
        FileDocumentRequest,
        MailRequest,
        ProjectionUpdate,
        RegisterProgramme,
        WorkspaceRef,
    )
    from domain.cycle import CycleCompleted
    from domain.errors import RuleViolation
    from domain.money import Money, raised_price
    from domain.naming import (
        SA_CUSTOMER_ID,
        SA_NON_RENEWAL_DEADLINE,
        SA_OPEN_STEPS,
        SA_PERIOD_END,
        SA_PROGRAM_PHASE,
        SA_TECHNICAL_LEAD,
    )
    from domain.program import BillableExtra, ProgramInput, ProgramStatus
    from domain.rules_program import check_live, check_step_open, check_step_payload
    from domain.step_inputs import (
        EXTRA_RULES,
        CompleteKickoff,
        RecordBillableExtra,
        StepName,
        StepStatus,
        SubmitSiteInventory,
        TechnicalLeadChanged,
        check_price_override,
    )
    from workflows import activity_calls as act

from workflows.search_attributes import upsert_changed
from workflows.updatable_sleep import UpdatableSleep
from workflows.update_sequence import UpdateSequence

# Rule C7 reaches the work already running: the monthly cycles and open requests are told of the new
# TL (signal `technical_lead_changed`). A reassignment recorded before this change replays without it.
PATCH_REASSIGN_RUNNING_WORK = "reassign-reaches-running-cycles-and-requests"
# Issue 16: an Update saves the state (and with it the inbox projection) before it returns, so a completed
# step has left the inbox when its Update returns. A programme that handled an Update before this change
# keeps saving from its main loop only.
PATCH_SAVE_IN_UPDATE = "update-saves-before-returning"
# Issue 16: `_publish` upserts only the search attributes that change (it runs after every step; the phase and
# the open steps change a few times a year). A programme started before keeps upserting them all.
PATCH_UPSERT_CHANGES = "programme-upserts-only-changes"
# A save outside an Update (the enrolment's, the main loop's) waits for an Update in flight: begun between the
# Update's first change and its last, it cleared `_dirty`, so the Update's own save was skipped and its last
# changes (the kickoff's new due dates) never reached the projection. Asked only while an Update holds the lock,
# so a run that never met the race records no marker; one that did replays as it ran.
PATCH_SAVE_WAITS_FOR_UPDATE = "save-waits-for-update-in-flight"


def iso(d: date | datetime | None) -> str | None:
    return d.isoformat() if d else None


class ProgramBase:
    _input: ProgramInput
    _status: ProgramStatus
    # The programme saves from its main loop (`_dirty`) and wakes it when recording an action.
    _updates: UpdateSequence
    _sleep: UpdatableSleep
    _dirty: bool
    _save_lock: asyncio.Lock
    _audit: list[AuditEntry]
    _subscription_contacts: int
    _period_over: bool
    _rule_checks_off: bool  # only while a pre-patch `complete_step` signal's validator replays
    _override_check_off: bool  # only while a `record_billable_extra` signal from before the C3 override check replays
    _previous_period_cycles: list[CycleCompleted]

    def _record(self, action: str, by: str, detail: dict[str, Any], interface: str = "temporal",
                at: datetime | None = None) -> None:
        """`at`: workflow time unless given; an entry written by a local activity passes an instant that stays the
        same when its workflow task runs again (the entry's key holds it: activities.db.audit_key)."""
        self._audit.append(AuditEntry(at=at or workflow.now(), actor=by, action=action,
                                      customer_id=self._status.customer_id, detail=detail, interface=interface))
        self._dirty = True
        self._sleep.wake()

    async def _tell_technical_lead_changed(self, workflow_id: str, change: TechnicalLeadChanged) -> None:
        """Rule C7: a running cycle or open request takes the new TL (signal `technical_lead_changed`)."""
        try:
            await workflow.get_external_workflow_handle(workflow_id).signal("technical_lead_changed", change)
        except FailureError as err:
            # Closed since it was listed (a request accepted, a cycle done): nothing left to hand over.
            workflow.logger.info("TL change not delivered to %s: %s", workflow_id, err)

    def _live(self) -> list[RuleViolation]:
        return check_live(self._status, self._period_over)

    def _step_open(self, step: StepName) -> list[RuleViolation]:
        return check_step_open(self._status, step, self._period_over)

    def _payload_rules(self, inp: CompleteKickoff | SubmitSiteInventory | RecordBillableExtra) -> list[RuleViolation]:
        """Rules A2, A7, C11, C3 on a step's payload; off only while a pre-patch signal replays."""
        if self._rule_checks_off:
            return []
        out = check_step_payload(inp, self._input.enrolment)
        if isinstance(inp, RecordBillableExtra) and not self._override_check_off:
            # rule C3: an amount other than the price list's says why (domain/step_inputs.py check_billable_extra).
            out += check_price_override(inp.amount, inp.override_reason)
        return out

    def _key(self, purpose: str) -> str:
        # Stable across retries, replays and worker crashes: the outbox and the
        # documents table refuse a second row with the same key.
        return f"{self._status.workflow_id}:p{self._status.period}:{purpose}"

    def _is_stale(self, at: datetime) -> bool:
        """A date long gone when the programme was taken over: no mail for it (docs/design.md "Past start dates")."""
        return workflow.now() - at > timedelta(days=self._input.policy.stale_after_days)

    def _total_contacts(self) -> int:
        return self._subscription_contacts + len(self._status.contacts)

    def _default_next_price(self) -> Money:
        pct = self._input.enrolment.renewal_price_increase_percent
        percent = Decimal(str(pct)) if pct is not None else self._input.policy.default_price_increase_percent
        return raised_price(self._status.annual_fee, percent)

    def _agreed_call_frequency(self) -> dict[str, Any]:
        """Rule C10: the follow-up frequency agreed (at enrolment or by `agree_call_frequency`), as the next
        period's enrolment takes it (an update of its `model_copy`)."""
        s = self._status
        return {"call_frequency_months": s.call_frequency_months,
                "call_frequency_agreement_ref": s.call_frequency_agreement_ref}

    # -------------------------------------------------------------- side effects
    async def _add_extra(self, inp: RecordBillableExtra) -> None:
        s = self._status
        extra = BillableExtra(kind=inp.kind, rule=EXTRA_RULES[inp.kind], description=inp.description,
                              agreement_ref=inp.agreement_ref, quantity=inp.quantity, months=inp.months,
                              amount=inp.amount, override_reason=inp.override_reason, recorded_at=workflow.now(),
                              recorded_by=inp.by)
        s.extras.append(extra)
        self._record("record_billable_extra", inp.by, {"kind": inp.kind.value, "rule": extra.rule,
                                                        "agreement_ref": inp.agreement_ref}, interface=inp.via)
        await act.record_billable_extra(
            ExtraRecord(customer_id=s.customer_id, period=s.period, extra=extra,
                        idempotency_key=self._key(f"extra:{len(s.extras)}")),
            summary=f"Billable extra {inp.kind.value} ({extra.rule})",
        )

    def _document_request(self, kind: str, template: str, title: str, context: dict[str, Any], version: int = 1,
                          purpose: str | None = None) -> FileDocumentRequest:
        s = self._status
        return FileDocumentRequest(customer_id=s.customer_id, period=s.period, kind=kind,  # type: ignore[arg-type]
                                   title=title, template=template, version=version,
                                   # The zone every time in the document is shown in (templates' `local`).
                                   context={"customer_name": s.customer_name, "timezone": s.calendar.timezone,
                                            **context},
                                   idempotency_key=self._key(f"doc:{purpose or kind}:v{version}"))

    async def _file(self, kind: str, template: str, title: str, context: dict[str, Any], version: int = 1,
                    purpose: str | None = None) -> int:
        return await self._file_document(self._document_request(kind, template, title, context, version, purpose))

    async def _file_document(self, document: FileDocumentRequest) -> int:
        ref = await act.file_document(document, summary=f"File '{document.title}' in the workspace")
        return ref.document_id

    def _mail_request(self, to: list[str], template: str, purpose: str, context: dict[str, Any],
                      cc: list[str] | None = None, attach_document_id: int | None = None) -> MailRequest:
        s = self._status
        return MailRequest(idempotency_key=self._key(f"mail:{purpose}"), to=to, cc=cc or [], template=template,
                           customer_id=s.customer_id, attach_document_id=attach_document_id,
                           context={"customer_name": s.customer_name, "customer_id": s.customer_id,
                                    "portal_url": self._input.policy.portal_url,
                                    "timezone": s.calendar.timezone, **context})

    async def _mail(self, to: list[str], template: str, purpose: str, context: dict[str, Any],
                    cc: list[str] | None = None, attach_document_id: int | None = None) -> None:
        await self._send_mail(self._mail_request(to, template, purpose, context, cc, attach_document_id))

    async def _send_mail(self, mail: MailRequest) -> None:
        try:
            await act.send_mail(mail, summary=f"Mail '{mail.template}' to {', '.join(mail.to)}")
        except ActivityError as err:
            # SMTP refused the message for good (5xx): keep it visible, never fail the programme.
            self._mail_refused(mail, str(err.cause or err))

    def _mail_refused(self, mail: MailRequest, why: str) -> None:
        self._status.mail_failures.append(f"{mail.template} to {', '.join(mail.to)}: {why}")
        self._dirty = True

    def _contacts_mail(self, template: str, purpose: str, context: dict[str, Any],
                       cc: list[str] | None = None, attach_document_id: int | None = None) -> MailRequest:
        to = [c.email for c in self._status.contacts] or [self._input.policy.ops_mailbox]
        return self._mail_request(to, template, purpose, context, cc=cc, attach_document_id=attach_document_id)

    async def _mail_contacts(self, template: str, purpose: str, context: dict[str, Any],
                             cc: list[str] | None = None, attach_document_id: int | None = None) -> None:
        await self._send_mail(self._contacts_mail(template, purpose, context, cc, attach_document_id))

    def _tl_assignment_mail(self, purpose: str) -> MailRequest:
        s = self._status
        assert s.plan is not None
        return self._mail_request([s.technical_lead.email], "tl_assignment", purpose, {
            "technical_lead": s.technical_lead.model_dump(mode="json"),
            "period_start": iso(s.plan.period_start), "period_end": iso(s.plan.period_end),
            "open_steps": [{"title": st.title, "due_on": iso(st.due_on)}
                           for st in s.steps if st.status in (StepStatus.open, StepStatus.waiting)],
        })

    async def _mail_tl_assignment(self, purpose: str) -> None:
        await self._send_mail(self._tl_assignment_mail(purpose))

    async def _save(self) -> None:
        # One save at a time: an Update's and the main loop's could otherwise commit in the wrong order.
        async with self._save_lock:
            await act.save_projection(ProjectionUpdate(status=self._status, audit=self._hand_over()),
                                      summary=f"Save programme state ({self._status.phase.value})")

    def _hand_over(self) -> list[AuditEntry]:
        """What a save writes, taken under the save lock: clean from here, the audit entries recorded so far, the
        search attributes and details published as of now."""
        self._dirty = False
        audit, self._audit = self._audit, []
        self._publish()
        return audit

    async def _register(self) -> WorkspaceRef:
        """The enrolment's registration since PATCH_ENROL_MAILS_AT_ONCE: a save (same lock, same hand-over of the
        audit entries) whose transaction also creates the customer, its contacts and the workspace (D10, A9)."""
        async with self._save_lock:
            return await act.register_programme_local(
                RegisterProgramme(status=self._status, enrolment=self._input.enrolment, audit=self._hand_over()),
                summary="Register programme and provision workspace (D10, A9)")

    async def _save_between_updates(self) -> None:
        """A save of the enrolment or the main loop: never in the middle of an Update (PATCH_SAVE_WAITS_FOR_UPDATE)."""
        if self._updates.lock.locked() and workflow.patched(PATCH_SAVE_WAITS_FOR_UPDATE):
            async with self._updates.lock:
                # An Update saves on its way out when it changed anything (since PATCH_SAVE_IN_UPDATE): only what
                # came after it is left.
                if self._dirty:
                    await self._save()
            return
        await self._save()

    async def _save_in_update(self) -> None:
        """The end of every Update (UpdateSequence's save): see PATCH_SAVE_IN_UPDATE."""
        if self._dirty and workflow.patched(PATCH_SAVE_IN_UPDATE):
            await self._save()

    def _publish(self) -> None:
        """Search attributes and current details: what admins see in the Temporal UI."""
        s = self._status
        updates: list[SearchAttributeUpdate[Any]] = [
            SA_CUSTOMER_ID.value_set(s.customer_id),
            SA_TECHNICAL_LEAD.value_set(s.technical_lead.id),
            SA_PROGRAM_PHASE.value_set(s.phase.value),
            SA_OPEN_STEPS.value_set([st.step for st in s.open_steps()]),
        ]
        if s.plan is not None:
            updates.append(SA_PERIOD_END.value_set(s.plan.period_end_at))
            updates.append(SA_NON_RENEWAL_DEADLINE.value_set(s.plan.non_renewal_deadline_end_at))
        upsert_changed(updates, PATCH_UPSERT_CHANGES)
        lines = [f"**{s.customer_name}** ({s.customer_id}), period {s.period}, phase **{s.phase.value}**",
                 f"TL: {s.technical_lead.name} ({s.technical_lead.id})"]
        if s.plan:
            lines.append(f"Period {s.plan.period_start} to {s.plan.period_end}; "
                         f"non-renewal deadline {s.plan.non_renewal_deadline}")
        for st in s.steps:
            mark = {"done": "x", "open": " ", "waiting": "-", "missed": "!"}[st.status.value]
            lines.append(f"- [{mark}] {st.title} (due {st.due_on})")
        done = sum(1 for c in s.cycles if c.status == "done")
        lines.append(f"Monthly cycles done: {done}/{len(s.cycles)}")
        if s.renewal and s.renewal.non_renewal:
            lines.append(f"Non-renewal notice from {s.renewal.non_renewal.party} on "
                         f"{s.renewal.non_renewal.received_on}")
        workflow.set_current_details("\n".join(lines))
