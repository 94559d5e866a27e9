"""When mail goes out, on the time-skipping server: step reminders and escalations on their
business-day instants (C5, D3, D4, D6), the non-renewal reminder (C16), the renewal notice
on its setting (C14), and a programme taken over months after its start (docs/design.md: past
period_start), which marks the long-gone dates missed and sends no mail for them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from domain.calendar import add_months
from domain.cycle import CycleStatus
from domain.naming import program_workflow_id
from domain.policy import ProgramPolicy
from domain.program import ProgramInput, ProgramStatus
from domain.step_inputs import StepStatus
from storage.repositories import list_documents, list_outbox
from tests.clock import Settled, settled
from tests.harness import Stack, add_subscription, enrolment, stack
from tests.harness import eventually as wait_until

PARIS = ZoneInfo("Europe/Paris")
T = TypeVar("T")
TL = "alice@support.example"


async def today(st: Stack) -> date:
    return (await st.now()).astimezone(PARIS).date()


async def begin(st: Stack, customer: str, period_start: date | None = None,
                **overrides: Any) -> tuple[WorkflowHandle[Any, Any], ProgramStatus]:
    """Subscription covering the period (E1), programme started, enrolment passed."""
    start = period_start or await today(st)
    await add_subscription(st.sessions, customer, start - timedelta(days=30), start + timedelta(days=800))
    handle = await st.start(enrolment(customer, start, **overrides))
    return handle, await st.wait_enrolled(customer)


def subject(m: EmailMessage) -> str:
    return str(m["Subject"])


def recipients(m: EmailMessage) -> str:
    return f"{m['To']} {m.get('Cc', '')}"


def matching(st: Stack, predicate: Callable[[EmailMessage], bool]) -> list[EmailMessage]:
    return [m for m in st.sink.messages if predicate(m)]


def reminder_for(title: str) -> Callable[[EmailMessage], bool]:
    return lambda m: "Reminder:" in subject(m) and title in subject(m)


def escalation_for(title: str) -> Callable[[EmailMessage], bool]:
    return lambda m: "Overdue:" in subject(m) and title in subject(m)


async def settle(st: Stack, handle: WorkflowHandle[Any, Any]) -> Settled:
    """Until the workflow has handled everything due by the server's now (tests/clock.py): a mail
    that was due has then been sent, so one missing was not due."""
    return await settled(handle, st.env)


def next_timer_is(quiet: Settled, at: datetime, what: str) -> None:
    """The workflow's next timer fires at `at` (`what`): nothing earlier is pending. A timer fires at its
    start event's time plus its duration: within a second of the instant the workflow asked for."""
    assert quiet.timers and abs(quiet.timers[0] - at) < timedelta(seconds=1), (
        f"the next timer should fire at {what} ({at.isoformat()}); timers: {[t.isoformat() for t in quiet.timers]}")


async def mailed_only_from(st: Stack, handle: WorkflowHandle[Any, Any], at: datetime, what: str,
                           mail: Callable[[EmailMessage], bool], margin: timedelta,
                           sent: Callable[[ProgramStatus], bool] | None = None) -> list[EmailMessage]:
    """`margin` before `at` (`what`) the workflow has handled all that was due, its next timer fires at `at`
    and `mail` has not gone out (nor, by the programme's status of acme, been `sent`); `margin` after, it has."""
    await st.sleep_until(at - margin)
    quiet = await settle(st, handle)
    next_timer_is(quiet, at, what)
    if sent is not None:
        assert not sent(await st.status("acme"))
    assert matching(st, mail) == [], f"no mail before {what}"
    await st.sleep_until(at + margin)
    return await st.sink.wait_for(mail, timeout=10)


async def first_cycle_running(st: Stack, customer: str) -> tuple[ProgramStatus, WorkflowHandle[Any, Any]]:
    """The programme begun and the clock a minute into its first month: its first monthly cycle runs."""
    _, s = await begin(st, customer)
    assert s.plan is not None
    await st.sleep_until(s.plan.month_start_ats[0] + timedelta(minutes=1))
    await wait_until(lambda: st.status(customer), lambda x: x.cycles[0].status == "running", "first cycle running")
    # Its due dates come from an activity (which may first seed the year's holiday list): running is not yet
    # scheduled, and a test reading a due date must not race it.
    await wait_until(lambda: cycle_status(st, s.cycles[0].workflow_id), lambda c: c.steps[0].remind_at is not None,
                     "first cycle's due dates scheduled")
    return s, st.client.get_workflow_handle(s.cycles[0].workflow_id)


async def cycle_status(st: Stack, workflow_id: str) -> CycleStatus:
    result: CycleStatus = await st.client.get_workflow_handle(workflow_id).query("get_status",
                                                                                  result_type=CycleStatus)
    return result


# ---- step reminders and escalations ------------------------------------------------------------------
@pytest.mark.rule("C5", "D3")
async def test_step_reminder_at_remind_at_and_escalation_at_due_at_rules_d3_d4_c5(
    env: WorkflowEnvironment, tmp_path: Path, sqlite_url: str
) -> None:
    async with stack(env, sqlite_url, tmp_path) as st:
        handle, s = await begin(st, "acme")
        step = s.step("schedule_kickoff")
        assert step is not None and step.status == StepStatus.open and step.remind_at and step.due_at
        # rule C5: due at the end of a business day (17:00 Paris), reminded at 09:00 two business days before.
        assert step.due_at.astimezone(PARIS).hour == 17 and step.remind_at.astimezone(PARIS).hour == 9
        assert step.due_on is not None and step.due_on.isoweekday() <= 5
        assert step.remind_at < step.due_at
        remind, escalate = reminder_for(step.title), escalation_for(step.title)

        got = await mailed_only_from(st, handle, step.remind_at, "step.remind_at", remind, timedelta(minutes=1),
                                     sent=lambda p: p.step("schedule_kickoff").reminded)  # type: ignore[union-attr]
        assert len(got) == 1 and TL in str(got[0]["To"])
        assert (await st.status("acme")).step("schedule_kickoff").reminded  # type: ignore[union-attr]

        # rule D3: problem management and escalation; an overdue step goes to the support manager.
        esc = await mailed_only_from(st, handle, step.due_at, "step.due_at", escalate, timedelta(minutes=1))
        assert len(esc) == 1
        assert TL in str(esc[0]["To"])
        assert st.policy.support_manager_mailbox in str(esc[0].get("Cc", ""))
        await settle(st, handle)
        assert len(matching(st, remind)) == 1 and len(matching(st, escalate)) == 1, "each mail exactly once"
        # The waiting steps (complete_kickoff and after) are not reminded while they wait.
        assert not matching(st, reminder_for("Hold the planning and review meeting"))


@pytest.mark.rule("D6", "D3", "C5")
async def test_monthly_cycle_schedule_call_reminder_and_escalation_rule_d6(
    env: WorkflowEnvironment, tmp_path: Path, sqlite_url: str
) -> None:
    async with stack(env, sqlite_url, tmp_path) as st:
        s, cycle = await first_cycle_running(st, "acme")
        assert s.plan is not None
        await settle(st, cycle)
        c = await cycle_status(st, cycle.id)
        step = c.steps[0]
        assert step.step == "schedule_call" and step.status == StepStatus.open
        assert step.remind_at and step.due_at and step.due_at.astimezone(PARIS).hour == 17
        remind, escalate = reminder_for("Schedule the monthly follow-up call"), \
            escalation_for("Schedule the monthly follow-up call")

        got = await mailed_only_from(st, cycle, step.remind_at, "step.remind_at", remind, timedelta(minutes=1))
        assert len(got) == 1 and TL in str(got[0]["To"])

        esc = await mailed_only_from(st, cycle, step.due_at, "step.due_at", escalate, timedelta(minutes=1))
        assert len(esc) == 1 and st.policy.support_manager_mailbox in str(esc[0].get("Cc", ""))
        c = await cycle_status(st, cycle.id)
        assert c.steps[0].reminded and c.steps[0].escalated and c.steps[0].status == StepStatus.open


# ---- renewal dates -----------------------------------------------------------------------------------
SHORT_TERM = {"term_months": 4, "written_agreement_ref": "AGR-SHORT-4"}  # rule C2: a written agreement


@pytest.mark.rule("C16")
async def test_non_renewal_reminder_to_contacts_before_the_deadline_rule_c16(
    env: WorkflowEnvironment, tmp_path: Path, sqlite_url: str
) -> None:
    # A 4-month term (C2, agreed in writing) keeps the dates close: deadline = end - 90 days.
    async with stack(env, sqlite_url, tmp_path) as st:
        handle, s = await begin(st, "acme", **SHORT_TERM)
        assert s.plan is not None and s.renewal is not None
        assert s.renewal.non_renewal_deadline == s.plan.period_end - timedelta(days=90)
        assert s.renewal.reminder_on == s.renewal.non_renewal_deadline - timedelta(
            days=st.policy.non_renewal_reminder_days_before_deadline)
        reminder_at = s.plan.non_renewal_reminder_at
        assert reminder_at < s.renewal.non_renewal_deadline_end_at

        def reminder(m: EmailMessage) -> bool:
            return "non-renewal deadline" in subject(m)

        got = await mailed_only_from(st, handle, reminder_at, "reminder_at", reminder, timedelta(hours=1),
                                     sent=lambda p: p.renewal.reminder_sent)  # type: ignore[union-attr]
        assert len(got) == 1
        assert "carol@acme.example" in str(got[0]["To"]) and "bob@acme.example" in str(got[0]["To"])
        body = got[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert "renews" in body
        assert await st.now() < s.renewal.non_renewal_deadline_end_at, "the reminder comes before the deadline"
        assert (await st.status("acme")).renewal.reminder_sent  # type: ignore[union-attr]


@pytest.mark.rule("C14")
async def test_renewal_notice_date_follows_the_setting_rule_c14(
    env: WorkflowEnvironment, tmp_path: Path, sqlite_url: str
) -> None:
    # Default (docs/configuration.md): 100 days before the end (so the customer still has time before the C16 deadline).
    assert ProgramPolicy().renewal_notice_days_before_end == 100
    policy = ProgramPolicy(renewal_notice_days_before_end=105)
    async with stack(env, sqlite_url, tmp_path, policy=policy) as st:
        start = await today(st)
        await add_subscription(st.sessions, "initech", start - timedelta(days=1), start + timedelta(days=800))
        # The same programme under the default policy, for comparison.
        await st.client.start_workflow(
            "ProgramWorkflow", ProgramInput(enrolment=enrolment("initech", start, **SHORT_TERM)),
            id=program_workflow_id("initech"), task_queue=st.task_queue)
        default = await st.wait_enrolled("initech")
        assert default.plan is not None and default.renewal is not None
        assert default.renewal.notice_on == default.plan.period_end - timedelta(days=100)

        handle, s = await begin(st, "acme", **SHORT_TERM)
        assert s.plan is not None and s.renewal is not None
        assert s.plan.period_end == default.plan.period_end
        assert s.renewal.notice_on == s.plan.period_end - timedelta(days=105)
        assert s.renewal.notice_on == default.renewal.notice_on - timedelta(days=5), "the date moved with the setting"
        notice_at = s.plan.renewal_notice_at
        assert notice_at.astimezone(PARIS).date() == s.renewal.notice_on

        def notice(m: EmailMessage) -> bool:
            return "renews" in subject(m) and "carol@acme.example" in str(m["To"])

        got = await mailed_only_from(st, handle, notice_at, "notice_at", notice, timedelta(hours=1),
                                     sent=lambda p: p.renewal.notice_sent)  # type: ignore[union-attr]
        assert len(got) == 1 and "carol@acme.example" in str(got[0]["To"])
        assert st.policy.ops_mailbox in str(got[0].get("Cc", ""))
        r = (await st.status("acme")).renewal
        assert r is not None and r.notice_sent and r.next_price is not None
        async with st.sessions() as session:
            docs = await list_documents(session, "acme", kind="renewal_notice")
        assert len(docs) == 1 and docs[0].data["non_renewal_deadline"] == r.non_renewal_deadline.isoformat()


# ---- a programme taken over months after its start --------------------------------------------------
async def test_programme_started_months_ago_marks_the_past_missed_without_mail(
    env: WorkflowEnvironment, tmp_path: Path, sqlite_url: str
) -> None:
    """docs/design.md: a past period_start places the workflow at the right point of the period, marks
    long-gone deadlines as missed and sends no mail for them (only welcome and TL assignment)."""
    async with stack(env, sqlite_url, tmp_path) as st:
        now_day = await today(st)
        # The current month began two weeks ago: its first step's date (5 business days) is long gone.
        start = add_months(now_day - timedelta(days=14), -4)
        handle, s = await begin(st, "legacy", period_start=start)
        assert s.plan is not None
        now = await st.now()
        current = max(i for i, at in enumerate(s.plan.month_start_ats) if at <= now)
        assert current == 4, s.plan.month_starts
        s = await wait_until(
            lambda: st.status("legacy"),
            lambda x: x.cycles[current].status == "running" and all(c.status == "missed" for c in x.cycles[:current]),
            f"months before {current + 1} missed, month {current + 1} running")
        cycle = st.client.get_workflow_handle(s.cycles[current].workflow_id)
        await settle(st, cycle)
        await settle(st, handle)
        s = await st.status("legacy")

        # Steps: every default deadline is long gone, so every step is missed, waiting or not.
        now = await st.now()
        for step in s.steps:
            assert step.status == StepStatus.missed and step.due_at is not None and step.due_at < now, step
        # Still to do, late and in order: only the first step can be completed now.
        assert [x.step for x in s.open_steps()] == ["schedule_kickoff"]

        # Months long gone: missed and never started. The current month runs; later ones wait.
        assert [c.status for c in s.cycles[:current]] == ["missed"] * current
        assert s.cycles[current].status == "running"
        assert all(c.status == "scheduled" for c in s.cycles[current + 1:])
        for c in s.cycles[:current]:
            with pytest.raises(RPCError):
                await st.client.get_workflow_handle(c.workflow_id).describe()
        cs = await cycle_status(st, s.cycles[current].workflow_id)
        sched = cs.steps[0]
        assert sched.due_at is not None and sched.due_at < await st.now() - timedelta(days=2)
        assert sched.reminded and sched.escalated, "the long-gone dates were handled..."

        # ...without mail: only the welcome (contacts) and the TL assignment went out.
        async with st.sessions() as session:
            templates = sorted(r.template for r in await list_outbox(session, customer_id="legacy"))
        assert templates == ["tl_assignment", "welcome"]
        subjects = sorted(subject(m) for m in st.sink.messages)
        assert len(subjects) == 2, subjects
        assert subjects[0].startswith("Welcome to OpenText TechConnect")
        assert subjects[1].startswith("[TechConnect] You are Technical Lead")

        # Missed steps can still be recorded late, in order: the kickoff cannot be held before
        # it was scheduled.
        held = {"by": "tl-alice", "held_on": (start + timedelta(days=5)).isoformat(), "attendees": ["Alice"],
                "minutes": "Kickoff held before the service took over.",
                "agreed_dates": {"communication_plan": (now_day + timedelta(days=20)).isoformat()}}
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await handle.execute_update("complete_kickoff", held, result_type=ProgramStatus)
        assert "out of order" in str(err.value.cause) and "schedule_kickoff" in str(err.value.cause)
        meeting = datetime.combine(start + timedelta(days=3), datetime.min.time(), PARIS).replace(hour=10)
        s = await handle.execute_update("schedule_kickoff", {"by": "tl-alice", "meeting_at": meeting.isoformat()},
                                        result_type=ProgramStatus)
        done = s.step("schedule_kickoff")
        assert done is not None and done.status == StepStatus.done and done.late
        assert s.step("complete_kickoff").status == StepStatus.missed  # type: ignore[union-attr]
        # rule A2: the minutes fix a new agreed date; the communication plan, due in the
        # future again, opens with its reminder and escalation to come.
        s = await handle.execute_update("complete_kickoff", held, result_type=ProgramStatus)
        plan = s.step("deliver_communication_plan")
        assert plan is not None and plan.status == StepStatus.open and plan.due_on == now_day + timedelta(days=20)
        assert not plan.reminded and not plan.escalated
        assert s.step("submit_site_inventory").status == StepStatus.missed  # type: ignore[union-attr]
        await settle(st, handle)
        async with st.sessions() as session:
            templates = sorted(r.template for r in await list_outbox(session, customer_id="legacy"))
        assert templates == ["kickoff_scheduled", "tl_assignment", "welcome"], "still no mail for dates long gone"
