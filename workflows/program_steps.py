"""The Technical Lead's onboarding steps, one Update each, done once and in order (domain/steps.py):
the planning and review meeting (D4/A2), the communication plan (D5/A3), the site inventory (D8/A7,
updatable all period) and the configuration analysis (D9/A8)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.activities import AnalysisRequest, DeadlineItem
    from domain.local_time import local_date
    from domain.program import Phase, ProgramStatus
    from domain.rules_cycle import replan_cycles
    from domain.rules_program import check_agreed_dates, check_inventory_update, check_meeting_time
    from domain.step_inputs import (
        AddFindings,
        CompleteKickoff,
        DeliverCommunicationPlan,
        PresentConfigurationAnalysis,
        ScheduleKickoff,
        StepInput,
        StepName,
        StepStatus,
        SubmitSiteInventory,
        agenda_not_covered,
    )
    from domain.steps import Workflow, tracked_steps
    from workflows import activity_calls as act

from workflows.program_base import iso
from workflows.program_timing import ProgramTiming
from workflows.update_sequence import refuse

# Rule D4/A2: the meeting's agreed date is when holding it is due (its reminder and escalation move with it).
# A kickoff scheduled before this change replays without the schedule_deadlines activity it adds.
PATCH_KICKOFF_DATE_IS_DUE_DATE = "kickoff-meeting-date-is-its-due-date"


class ProgramSteps(ProgramTiming):
    @asynccontextmanager
    async def _step(self, step: StepName, inp: StepInput) -> AsyncIterator[ProgramStatus]:
        """Lock, re-check that the step is still open (two Updates for one step may both pass their
        validators before either runs), mark it done, then the Update's body."""
        async with self._updates(lambda: self._step_open(step)):
            self._mark_done(step, inp.by, inp.via)
            yield self._status

    def _mark_done(self, step: StepName, by: str, via: str) -> None:
        st = self._status.step(step.value)
        assert st is not None
        now = workflow.now()
        st.status, st.done_at, st.done_by = StepStatus.done, now, by
        st.late = bool(st.due_at and now > st.due_at)
        self._open_ready_steps()
        if self._status.phase == Phase.onboarding and all(
            x.status == StepStatus.done for x in self._status.steps
        ):
            self._status.phase = Phase.running
        self._record(step.value, by, {}, interface=via)

    @workflow.update
    async def schedule_kickoff(self, inp: ScheduleKickoff) -> ProgramStatus:
        async with self._step(StepName.schedule_kickoff, inp) as s:
            await self._mail_contacts("kickoff_scheduled", "kickoff-scheduled", {
                "meeting_at": iso(inp.meeting_at), "attendance": inp.attendance, "location": inp.location,
                "technical_lead": s.technical_lead.model_dump(mode="json"),
            }, cc=[s.technical_lead.email])
            if workflow.patched(PATCH_KICKOFF_DATE_IS_DUE_DATE):
                # The meeting's local date: meeting_at carries the offset it was agreed in (check_meeting_time).
                await self._apply_deadlines([DeadlineItem(key=StepName.complete_kickoff.value,
                                                          due_on=local_date(inp.meeting_at, s.calendar.timezone))],
                                            "Kickoff meeting date agreed: holding it is due that day (D4/A2)")
            return s

    @schedule_kickoff.validator
    def _validate_schedule_kickoff(self, inp: ScheduleKickoff) -> None:
        refuse(self._step_open(StepName.schedule_kickoff))
        refuse(check_meeting_time(inp))

    @workflow.update
    async def complete_kickoff(self, inp: CompleteKickoff) -> ProgramStatus:
        async with self._step(StepName.complete_kickoff, inp) as s:
            # rule A2: the meeting "may cover" the agenda; what it left out is flagged, in the minutes too.
            s.kickoff_agenda_not_covered = agenda_not_covered(inp.agenda_covered)
            await self._file("kickoff_minutes", "kickoff_minutes", "Planning and review meeting minutes",
                             inp.model_dump(mode="json") | {"agenda_not_covered": s.kickoff_agenda_not_covered})
            # rule D4/A2: the minutes fix the agreed dates of the other steps.
            agreed = inp.agreed_dates
            items = [DeadlineItem(key=st.name, due_on=d) for st in tracked_steps(Workflow.program)
                     if st.agreed_date is not None and (d := getattr(agreed, st.agreed_date)) is not None]
            if items:
                await self._apply_deadlines(items, "Agreed dates from the kickoff minutes (A2)")
            self._agree_call_schedule(inp)
            return s

    def _agree_call_schedule(self, inp: CompleteKickoff) -> None:
        """D6/C10 by A2: the minutes' call day and follow-up frequency apply to the cycles not started yet
        (no command: the cycles read them when they start). Absent from the minutes, nothing changes."""
        s, agreed = self._status, inp.agreed_dates
        assert s.plan is not None
        if agreed.call_day_of_month is not None:
            s.call_day_of_month = agreed.call_day_of_month
        months = agreed.report_frequency_months
        if months is not None and months != s.call_frequency_months:
            # rule C10, as agree_call_frequency does it: the agreement is the minutes.
            previous = s.call_frequency_months
            s.call_frequency_months, s.call_frequency_agreement_ref = months, f"kickoff minutes {inp.held_on}"
            s.cycles = replan_cycles(s.cycles, s.customer_id, s.period, s.plan, months)
            self._record("agree_call_frequency", inp.by, {"from_months": previous, "months": months,
                                                           "agreement_ref": s.call_frequency_agreement_ref,
                                                           "reason": "agreed at the kickoff (A2)"},
                         interface=inp.via)

    @complete_kickoff.validator
    def _validate_complete_kickoff(self, inp: CompleteKickoff) -> None:
        refuse(self._step_open(StepName.complete_kickoff))
        assert self._status.plan is not None
        refuse(check_agreed_dates(inp, self._status.plan.period_end))
        refuse(self._payload_rules(inp))

    @workflow.update
    async def deliver_communication_plan(self, inp: DeliverCommunicationPlan) -> ProgramStatus:
        async with self._step(StepName.deliver_communication_plan, inp) as s:
            ctx = inp.model_dump(mode="json") | {
                "technical_lead": s.technical_lead.model_dump(mode="json"),
                "contacts": [c.model_dump(mode="json") for c in s.contacts]}
            doc = await self._file("communication_plan", "communication_plan", "Communication plan", ctx)
            await self._mail_contacts("document_filed", "doc:communication-plan",
                                      {"document_title": "Communication plan", "kind": "communication_plan"},
                                      attach_document_id=doc)
            return s

    @deliver_communication_plan.validator
    def _validate_deliver_communication_plan(self, inp: DeliverCommunicationPlan) -> None:
        refuse(self._step_open(StepName.deliver_communication_plan))

    @workflow.update
    async def submit_site_inventory(self, inp: SubmitSiteInventory) -> ProgramStatus:
        async with self._step(StepName.submit_site_inventory, inp) as s:
            await self._store_inventory(inp)
            return s

    @submit_site_inventory.validator
    def _validate_submit_site_inventory(self, inp: SubmitSiteInventory) -> None:
        refuse(self._step_open(StepName.submit_site_inventory))
        refuse(self._payload_rules(inp))

    @workflow.update
    async def update_site_inventory(self, inp: SubmitSiteInventory) -> ProgramStatus:
        """D8: the inventory is updatable all period, each version filed."""
        async with self._updates():
            await self._store_inventory(inp)
            self._record("update_site_inventory", inp.by, {"version": self._status.inventory_version},
                         interface=inp.via)
            return self._status

    @update_site_inventory.validator
    def _validate_update_site_inventory(self, inp: SubmitSiteInventory) -> None:
        refuse(self._live())
        refuse(check_inventory_update(self._status))
        refuse(self._payload_rules(inp))

    async def _store_inventory(self, inp: SubmitSiteInventory) -> None:
        s = self._status
        s.inventory = inp.inventory
        s.inventory_version += 1
        v = s.inventory_version
        await self._file("site_inventory", "site_inventory", f"Site inventory v{v}",
                         {"inventory": inp.inventory.model_dump(mode="json"), "version": v,
                          "missing_items": inp.inventory.missing_items()}, version=v)
        assert s.plan is not None
        # rule A8: rule-based findings, computed in an activity so changing the rules
        # never breaks the replay of running programmes.
        result = await act.analyse_configuration(
            AnalysisRequest(customer_id=s.customer_id, period=s.period, inventory=inp.inventory,
                            as_of=workflow.now().date()),
            summary=f"Configuration analysis rules on inventory v{v} (A8)",
        )
        human = [f for f in s.findings if f.source != "rules"]
        s.findings = result.findings + human
        await self._file("configuration_findings", "configuration_findings", f"Configuration findings v{v}",
                         {"findings": [f.model_dump(mode="json") for f in s.findings], "inventory_version": v},
                         version=v, purpose=f"findings-inv{v}")

    @workflow.update
    async def add_findings(self, inp: AddFindings) -> ProgramStatus:
        async with self._step(StepName.add_findings, inp) as s:
            for f in inp.findings:
                s.findings.append(f.model_copy(update={"source": inp.role, "author": inp.by}))
            await self._file("configuration_findings", "configuration_findings", "Configuration findings (reviewed)",
                             {"findings": [f.model_dump(mode="json") for f in s.findings],
                              "inventory_version": s.inventory_version}, purpose="findings-reviewed")
            return s

    @add_findings.validator
    def _validate_add_findings(self, inp: AddFindings) -> None:
        refuse(self._step_open(StepName.add_findings))

    @workflow.update
    async def present_configuration_analysis(self, inp: PresentConfigurationAnalysis) -> ProgramStatus:
        async with self._step(StepName.present_configuration_analysis, inp) as s:
            doc = await self._file("analysis_presentation", "analysis_presentation",
                                   "Configuration analysis presentation",
                                   inp.model_dump(mode="json") | {
                                       "findings": [f.model_dump(mode="json") for f in s.findings]})
            await self._mail_contacts("document_filed", "doc:analysis-presentation",
                                      {"document_title": "Configuration analysis", "kind": "analysis_presentation"},
                                      attach_document_id=doc)
            return s

    @present_configuration_analysis.validator
    def _validate_present_configuration_analysis(self, inp: PresentConfigurationAnalysis) -> None:
        refuse(self._step_open(StepName.present_configuration_analysis))
