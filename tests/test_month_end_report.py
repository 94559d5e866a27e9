"""Rule D7/A6: the monthly report is drafted after the month ends, covering all of it; the TL approves it or
sends it back with comments (kept); only the approved version reaches the workspace and the mail; a month
without its call still gets a report saying so, and the TL hears of it (D6).

On the time-skipping server with the real worker, database and SMTP sink; the portal part on the ASGI app
with a draft filed by the real document activity."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from activities.documents import DocumentActivities
from activities.templating import make_template_environment
from config.settings import Settings
from domain.activities import MonthlyReportRequest
from domain.cycle import CycleStatus, ReportReview
from domain.request import NewRequest
from domain.step_inputs import StepStatus
from portal.app import create_app
from starter.errors import Refused
from starter.programs import execute_step, prepare_step
from starter.requests import open_request
from storage import repositories as repo
from storage.repositories.documents import MONTHLY_REPORT_DRAFT
from storage.users import Role
from testing.databases import migrated_sessions
from tests.clock import settled
from tests.cycles import drafted
from tests.harness import Stack, eventually, stack
from tests.portal_fixtures import UnreachableTemporal, add_staff, seed_tenant, sign_in
from tests.test_program_timing import first_cycle_running

PARIS = ZoneInfo("Europe/Paris")
CONTACT = "carol@acme.example"
TL = "alice@support.example"


async def documents(st: Stack, *, drafts: bool) -> list[Any]:
    async with st.sessions() as session:
        return list(await repo.list_documents(session, "acme", drafts=drafts))


@pytest.mark.rule("D7", "A6")
async def test_the_report_counts_the_whole_month_and_only_the_approved_version_reaches_the_customer(
    env: WorkflowEnvironment, tmp_path: Path, sqlite_url: str,
) -> None:
    async with stack(env, sqlite_url, tmp_path) as st:
        s, cycle = await first_cycle_running(st, "acme")
        assert s.plan is not None
        month_start = s.plan.month_starts[0]
        call_on = month_start + timedelta(days=9)  # the month's 10th day

        async def cupd(name: str, payload: dict[str, Any]) -> CycleStatus:
            result: CycleStatus = await cycle.execute_update(name, {"by": "tl-alice", **payload},
                                                             result_type=CycleStatus)
            return result

        await cupd("schedule_call", {"call_at": datetime.combine(call_on, time(14), PARIS).isoformat()})
        await st.sleep_until(datetime.combine(call_on, time(15), PARIS))
        held = await cupd("hold_call", {"held_on": call_on.isoformat(), "attendees": ["Carol"],
                                        "notes": "Reviewed the open requests."})
        # Nothing is drafted at the call: the month is not over.
        assert held.report_document_id is None and held.steps[2].status == StepStatus.waiting
        with pytest.raises(WorkflowUpdateFailedError) as early:
            await cupd("approve_report", {})
        assert "rule D7" in str(early.value.cause) and "nothing to approve yet" in str(early.value.cause)

        # Two requests opened after the call, later in the month: the report counts them.
        settings = st.settings.model_copy(update={"task_queue": st.task_queue})
        for summary in ("Search is slow", "Indexer stopped"):
            await open_request(st.client, settings, NewRequest(customer_id="acme", kind="support", priority="low",
                                                               summary=summary, filed_by=CONTACT),
                               now=await st.now(), sessions=st.sessions)

        first = await drafted(st, cycle)
        assert first.report_version == 1 and not first.no_call_held
        [draft] = [d for d in await documents(st, drafts=True) if d.kind == MONTHLY_REPORT_DRAFT]
        assert draft.id == first.report_document_id
        assert "2 support requests" in draft.data["summary"], draft.data["summary"]
        assert "Reviewed the open requests." in draft.body_text
        # Out of the customer's sight, and no report mailed, until approved.
        assert all(d.kind != MONTHLY_REPORT_DRAFT for d in await documents(st, drafts=False))
        assert not st.mails("follow-up report")

        # Through the client layer every face uses, without naming the month: month 2's cycle runs too, and the
        # report waiting for approval is month 1's.
        assert (await st.status("acme")).cycles[1].status == "running"
        reply = await execute_step(st.client, "acme", "send_back_report", "tl-alice", {
            "comments": "Say when patch 23.4.2 goes in.",
            "call_notes": "Reviewed the open requests; 23.4.2 in March."})
        assert reply["workflow_id"] == cycle.id
        sent_back = CycleStatus.model_validate(reply["status"])
        assert sent_back.report_version == 2 and sent_back.report_document_id != draft.id
        assert [(r.version, r.decision, r.comments) for r in sent_back.report_reviews] == [
            (1, "sent_back", "Say when patch 23.4.2 goes in.")]
        with pytest.raises(Refused) as blank:
            prepare_step("send_back_report", "tl-alice", {"comments": ""})
        assert "comments" in str(blank.value)

        approved = await cupd("approve_report", {"comments": "Good now."})
        assert approved.done or approved.steps[2].status == StepStatus.done
        assert [(r.version, r.decision, r.by, r.comments) for r in approved.report_reviews] == [
            (1, "sent_back", "tl-alice", "Say when patch 23.4.2 goes in."), (2, "approved", "tl-alice", "Good now.")]
        await settled(cycle, env)

        visible = [d for d in await documents(st, drafts=False) if d.kind.startswith("monthly_report")]
        assert [(d.id, d.kind, d.version) for d in visible] == [(approved.report_document_id, "monthly_report", 2)]
        assert "23.4.2 in March" in visible[0].body_text and visible[0].data["approved_by"] == "tl-alice"
        # The history stays with the report, for staff: the comments are in its data, not in what it says.
        assert [(r["version"], r["decision"], r["comments"]) for r in visible[0].data["reviews"]] == [
            (1, "sent_back", "Say when patch 23.4.2 goes in."), (2, "approved", "Good now.")]
        assert "Say when patch" not in visible[0].body_text + visible[0].body_html
        # The first version stays a draft: staff see the history, the customer never does.
        assert draft.id in {d.id for d in await documents(st, drafts=True) if d.kind == MONTHLY_REPORT_DRAFT}
        [mail] = st.mails("follow-up report", to=CONTACT)
        assert any(part.get_filename() for part in mail.walk()), "the approved report is attached"


@pytest.mark.rule("D6", "D7")
async def test_a_month_without_its_call_gets_a_report_saying_so_and_the_tl_hears_of_it(
    env: WorkflowEnvironment, tmp_path: Path, sqlite_url: str,
) -> None:
    async with stack(env, sqlite_url, tmp_path) as st:
        _, cycle = await first_cycle_running(st, "acme")
        s = await drafted(st, cycle)
        assert s.no_call_held and s.call_held_on is None
        assert [st_.status for st_ in s.steps] == [StepStatus.missed, StepStatus.missed, StepStatus.open]
        [draft] = [d for d in await documents(st, drafts=True) if d.id == s.report_document_id]
        assert draft.kind == MONTHLY_REPORT_DRAFT and "NO CALL HELD THIS MONTH" in draft.body_text
        assert "No call held this month" in draft.body_html and "no call held" in draft.data["summary"]
        await settled(cycle, env)
        escalations = [m for m in st.mails("overdue", to=TL) if "no call was held" in str(m["Subject"])]
        assert len(escalations) == 1, [str(m["Subject"]) for m in st.mails(to=TL)]
        with pytest.raises(WorkflowUpdateFailedError) as late:
            await cycle.execute_update("hold_call", {"by": "tl-alice", "held_on": s.month_end.isoformat(),
                                                     "attendees": ["Carol"], "notes": "Late"},
                                       result_type=CycleStatus)
        assert "rule D6" in str(late.value.cause) and "missed" in str(late.value.cause)
        done: CycleStatus = await cycle.execute_update("approve_report", {"by": "tl-alice"}, result_type=CycleStatus)
        assert done.done
        assert [d.kind for d in await documents(st, drafts=False) if d.id == s.report_document_id] == [
            "monthly_report"]


@pytest.mark.rule("D7", "A9")
async def test_a_draft_is_not_reachable_by_the_customer_by_list_or_url_but_staff_read_it(
    tmp_path: Path, sqlite_url: str,
) -> None:
    async with migrated_sessions(sqlite_url) as sessions:
        tenant = await seed_tenant(sessions, "acme", "tl-alice")
        await add_staff(sessions, "ops@techconnect.example", Role.ops)
        docs = DocumentActivities(sessions, make_template_environment())
        month_start = datetime(2027, 3, 1).date()
        draft = await docs.generate_monthly_report(MonthlyReportRequest(
            customer_id="acme", customer_name="Acme Corp", period=1, month=3, month_start=month_start,
            month_end=month_start.replace(day=31), idempotency_key="draft-acme-m3-v2", draft=True, version=2,
            months_ended=True, reviews=[ReportReview(version=1, decision="sent_back", by="tl-alice",
                                                     at=datetime(2027, 4, 1, 9, tzinfo=PARIS),
                                                     comments="Name the patch level.")]))
        settings = Settings(data_dir=tmp_path, database_url=sqlite_url, portal_secret="test-secret-" + "x" * 20)
        app = create_app(settings, sessions=sessions, client=UnreachableTemporal())  # type: ignore[arg-type]
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://portal.test") as contact:
                await sign_in(contact, tenant.contact_email)
                page = await contact.get("/workspace/acme")
                assert page.status_code == 200 and draft.title not in page.text
                assert (await contact.get(f"/workspace/acme/documents/{draft.document_id}")).status_code == 404
                assert (await contact.get(f"/workspace/acme/documents/{tenant.document_id}")).status_code == 200
                assert (await contact.get(f"/api/customers/acme/documents/{draft.document_id}")).status_code == 404
            async with httpx.AsyncClient(transport=transport, base_url="http://portal.test") as staff:
                await sign_in(staff, "ops@techconnect.example")
                shown = await staff.get(f"/workspace/acme/documents/{draft.document_id}")
                assert shown.status_code == 200 and "No call held this month" in shown.text
                assert "Review history" in shown.text and "Name the patch level." in shown.text


@pytest.mark.rule("D6", "D7")
async def test_a_call_recorded_after_its_month_is_reported_held_and_the_programme_hears_of_it(
    env: WorkflowEnvironment, tmp_path: Path, sqlite_url: str,
) -> None:
    async with stack(env, sqlite_url, tmp_path) as st:
        s, cycle = await first_cycle_running(st, "acme")
        assert s.plan is not None
        missed = await drafted(st, cycle)
        assert missed.no_call_held and missed.report_version == 1

        async def send_back(payload: dict[str, Any]) -> CycleStatus:
            result: CycleStatus = await cycle.execute_update(
                "send_back_report", {"by": "tl-alice", "comments": "The call did take place.", **payload},
                result_type=CycleStatus)
            return result

        with pytest.raises(WorkflowUpdateFailedError) as no_notes:
            await send_back({"held_on": missed.month_end.isoformat()})
        assert "rule D6" in str(no_notes.value.cause) and "call_notes" in str(no_notes.value.cause)
        held = await send_back({"held_on": missed.month_end.isoformat(), "call_notes": "Held on the last day."})
        assert held.call_held_on == missed.month_end and not held.no_call_held and held.report_version == 2
        assert [x.status for x in held.steps] == [StepStatus.missed, StepStatus.done, StepStatus.open]
        assert held.steps[1].late
        [draft] = [d for d in await documents(st, drafts=True) if d.id == held.report_document_id]
        assert "NO CALL HELD" not in draft.body_text and "Held on the last day." in draft.body_text
        # The programme counts the call now, before the cycle completes (the final report may come first).
        programme = await eventually(lambda: st.status("acme"),
                                     lambda p: p.cycles[0].call_held_on == missed.month_end,
                                     "the programme told of the call", timeout=30)
        assert programme.cycles[0].status == "running"

        # The TL approves the version they read: an approval of the version sent back is refused.
        with pytest.raises(WorkflowUpdateFailedError) as stale:
            await cycle.execute_update("approve_report", {"by": "tl-alice", "version": 1}, result_type=CycleStatus)
        assert "rule D7" in str(stale.value.cause) and "version 2" in str(stale.value.cause)
        done: CycleStatus = await cycle.execute_update("approve_report", {"by": "tl-alice", "version": 2},
                                                       result_type=CycleStatus)
        assert done.done
        finished = await eventually(lambda: st.status("acme"), lambda p: p.cycles[0].status == "done",
                                    "the cycle's completion reached the programme", timeout=30)
        assert finished.cycles[0].call_held_on == missed.month_end
