"""The renewal paperwork on the time-skipping server (rules C14, C15, C16, E1): the notice goes out first with
the renewal invoice attached and filed, the customer's deadline reminder after it, an unpaid invoice is escalated
to ops on its date, a payment carries into the next period, and a maintenance subscription that does not cover
the next period is announced ahead of the end."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from config.settings import Settings
from domain.policy import ProgramPolicy
from domain.program import ProgramStatus
from domain.renewal import renewal_timing_problems
from storage.repositories import list_billable_extras, list_documents
from tests.clock import settled
from tests.harness import Cli, Stack, add_subscription, cli_environ, enrolment, eventually, stack
from worker import workflow_runner
from workflows.program import ProgramWorkflow

PARIS = ZoneInfo("Europe/Paris")
SHORT_TERM = {"term_months": 4, "written_agreement_ref": "AGR-SHORT-4"}  # rule C2: a written agreement
OPS = ProgramPolicy().ops_mailbox


async def today(st: Stack) -> date:
    return (await st.now()).astimezone(PARIS).date()


def template(m: EmailMessage) -> str:
    return str(m["X-TechConnect-Template"])


def attachment_names(m: EmailMessage) -> list[str]:
    return [str(p.get_filename()) for p in m.iter_attachments()]


def mails_of(st: Stack, customer: str) -> list[EmailMessage]:
    return [m for m in st.sink.messages if m["X-TechConnect-Customer"] == customer]


async def start(st: Stack, customer: str, subscription_end: date | None = None, contact_count: int = 2,
                **overrides: Any) -> tuple[WorkflowHandle[Any, Any], ProgramStatus]:
    first = await today(st)
    e = enrolment(customer, first, **SHORT_TERM, **overrides)
    await add_subscription(st.sessions, customer, first - timedelta(days=30),
                           subscription_end or e.period_end + timedelta(days=800), contact_count=contact_count)
    handle = await st.start(e)
    return handle, await st.wait_enrolled(customer)


@pytest.mark.rule("C14", "C15", "C16")
async def test_notice_with_the_invoice_then_the_reminder_then_the_unpaid_escalation_and_the_payment_carries(
    env: WorkflowEnvironment, tmp_path: Path, sqlite_url: str,
) -> None:
    async with stack(env, sqlite_url, tmp_path) as st:
        handle, s = await start(st, "acme", renewal_price_increase_percent=5)
        assert s.plan is not None and s.renewal is not None
        plan, policy = s.plan, st.policy
        assert plan.invoice_escalation_at is not None and plan.invoice_due_on == plan.period_end

        def sent() -> list[str]:
            return [template(m) for m in mails_of(st, "acme") if template(m) in (
                "renewal_notice", "non_renewal_reminder", "renewal_invoice_unpaid")]

        # Mail headers carry the wall clock: the order is checked on the server's clock, step by step.
        deadline_end = s.renewal.non_renewal_deadline_end_at
        # rule C14: the price is seen at least the configured days before the deadline; C16: the reminder
        # comes after the notice, while the deadline is still ahead.
        assert deadline_end - plan.renewal_notice_at >= timedelta(days=policy.renewal_notice_min_days_before_deadline)
        assert plan.renewal_notice_at < plan.non_renewal_reminder_at < deadline_end
        await st.sleep_until(plan.renewal_notice_at - timedelta(hours=1))
        await settled(handle, env)
        assert sent() == []
        await st.sleep_until(plan.renewal_notice_at + timedelta(hours=1))
        await settled(handle, env)
        assert sent() == ["renewal_notice"]
        await st.sleep_until(plan.non_renewal_reminder_at + timedelta(hours=1))
        await settled(handle, env)
        assert sent() == ["renewal_notice", "non_renewal_reminder"]
        # Just before the escalation date: nothing more.
        await st.sleep_until(plan.invoice_escalation_at - timedelta(hours=2))
        await settled(handle, env)
        assert sent() == ["renewal_notice", "non_renewal_reminder"]
        notice = next(m for m in mails_of(st, "acme") if template(m) == "renewal_notice")

        s = await st.status("acme")
        assert s.renewal is not None and s.renewal.invoice is not None
        invoice = s.renewal.invoice
        assert invoice.number == "TC-INV-ACME-P2" and invoice.period == 2 and invoice.due_on == plan.period_end
        assert str(invoice.total.amount) == "50400.00"  # 48,000 + 5 % (C15), the notice's price
        assert s.renewal.price_rise_reason == "the rise of 5 % agreed at enrolment"
        assert [a for a in attachment_names(notice) if "TC-INV-ACME-P2" in a], attachment_names(notice)
        async with st.sessions() as session:
            docs = await list_documents(session, "acme")
        filed = [d for d in docs if d.kind == "renewal_invoice"]
        assert len(filed) == 1 and filed[0].id == invoice.document_id and "50,400.00" in filed[0].body_text

        # The escalation goes to ops (the TL in copy) on its date, once.
        await st.sleep_until(plan.invoice_escalation_at + timedelta(hours=1))
        escalations = await eventually(
            lambda: _async([m for m in mails_of(st, "acme") if template(m) == "renewal_invoice_unpaid"]),
            lambda ms: len(ms) == 1, "the unpaid-invoice escalation", timeout=30)
        assert OPS in str(escalations[0]["To"]) and "alice@support.example" in str(escalations[0]["Cc"])

        # Paid after the escalation; the next period's status still shows it.
        paid_on = await today(st)
        cli = Cli(cli_environ(st))
        wrong = await cli("notice", "invoice-paid", "acme", "--invoice", "TC-INV-ACME-P9",
                          "--paid-on", paid_on.isoformat(), "--by", "ops-olga")
        assert wrong.code == 2 and "TC-INV-ACME-P2" in wrong.err + wrong.out, str(wrong)
        paid = await cli("notice", "invoice-paid", "acme", "--invoice", invoice.number,
                         "--paid-on", paid_on.isoformat(), "--by", "ops-olga")
        assert paid.code == 0, str(paid)
        await st.sleep_until(plan.period_end_at + timedelta(hours=2))
        nxt = await eventually(lambda: st.status("acme"), lambda x: x.period == 2, "the next period", timeout=30)
        assert nxt.period_invoice is not None and nxt.period_invoice.number == invoice.number
        assert nxt.period_invoice.paid_on == paid_on
        # The paid invoice is not escalated again, and nothing was mailed twice.
        assert len([m for m in mails_of(st, "acme") if template(m) == "renewal_invoice_unpaid"]) == 1
        # The first period's run (notice, invoice, reminder, escalation, payment, E1 checks) replays.
        await Replayer(workflows=[ProgramWorkflow], data_converter=st.client.data_converter,
                       workflow_runner=workflow_runner()).replay_workflow(await handle.fetch_history())


async def _async(value: Any) -> Any:
    return value


@pytest.mark.rule("C14")
async def test_an_unpaid_invoice_closes_the_programme_when_the_policy_says_so(
    env: WorkflowEnvironment, tmp_path: Path, sqlite_url: str,
) -> None:
    policy = ProgramPolicy(next_period_starts_unpaid=False)
    async with stack(env, sqlite_url, tmp_path, policy=policy) as st:
        handle, s = await start(st, "initech")
        assert s.plan is not None
        await st.sleep_until(s.plan.period_end_at + timedelta(hours=2))
        result = await handle.result()
        assert "TC-INV-INITECH-P2 unpaid" in result["outcome"] and "C14" in result["outcome"], result


@pytest.mark.rule("E1")
async def test_a_lapsing_maintenance_is_announced_twice_then_the_programme_closes(
    env: WorkflowEnvironment, tmp_path: Path, sqlite_url: str,
) -> None:
    async with stack(env, sqlite_url, tmp_path) as st:
        first = await today(st)
        period_end = enrolment("acme", first, **SHORT_TERM).period_end
        handle, s = await start(st, "acme", subscription_end=period_end)  # covers this period, not the next
        assert s.plan is not None and s.plan.maintenance_warning_ats is not None
        first_at, second_at = s.plan.maintenance_warning_ats

        def warnings() -> list[EmailMessage]:
            return [m for m in mails_of(st, "acme") if template(m) == "maintenance_lapse_warning"]

        await st.sleep_until(first_at - timedelta(hours=1))
        await settled(handle, env)
        assert warnings() == []
        await st.sleep_until(first_at + timedelta(hours=1))
        got = await eventually(lambda: _async(warnings()), lambda ms: len(ms) == 1, "the first E1 warning", timeout=30)
        # Ops and the TL are told at once, with the subscription's end in the message.
        assert OPS in str(got[0]["To"]) and "alice@support.example" in str(got[0]["To"])
        assert period_end.isoformat() in got[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
        await st.sleep_until(second_at + timedelta(hours=1))
        await eventually(lambda: _async(warnings()), lambda ms: len(ms) == 2, "the second E1 warning", timeout=30)
        await st.sleep_until(s.plan.period_end_at + timedelta(hours=2))
        result = await handle.result()
        assert result["outcome"].startswith("closed: not renewed: rule E1"), result


@pytest.mark.rule("E1")
async def test_a_maintenance_extended_after_the_warning_renews_normally(
    env: WorkflowEnvironment, tmp_path: Path, sqlite_url: str,
) -> None:
    async with stack(env, sqlite_url, tmp_path) as st:
        first = await today(st)
        period_end = enrolment("acme", first, **SHORT_TERM).period_end
        _, s = await start(st, "acme", subscription_end=period_end)
        assert s.plan is not None and s.plan.maintenance_warning_ats is not None
        first_at, _ = s.plan.maintenance_warning_ats
        await st.sleep_until(first_at + timedelta(hours=1))
        await eventually(lambda: st.status("acme"),
                         lambda x: bool(x.renewal and len(x.renewal.maintenance_checks) == 1), "the first check",
                         timeout=30)
        # Ops import the extended registry row.
        await add_subscription(st.sessions, "acme", first - timedelta(days=30), period_end + timedelta(days=800))
        await st.sleep_until(s.plan.period_end_at + timedelta(hours=2))
        nxt = await eventually(lambda: st.status("acme"), lambda x: x.period == 2, "the next period", timeout=30)
        assert nxt.phase.value != "closed"
        warnings = [m for m in mails_of(st, "acme") if template(m) == "maintenance_lapse_warning"]
        assert len(warnings) == 1  # the second check found it covered: no second warning


@pytest.mark.rule("C4")
async def test_a_contact_accepted_over_fifteen_is_billed_again_in_the_next_period(
    env: WorkflowEnvironment, tmp_path: Path, sqlite_url: str,
) -> None:
    async with stack(env, sqlite_url, tmp_path) as st:
        handle, s = await start(st, "acme", contact_count=13)  # 13 on the registry + 2 enrolled = 15
        assert s.plan is not None
        await handle.execute_update("add_contact", {
            "by": "ops-olga", "contact": {"name": "Dan", "email": "dan@acme.example"},
            "accept_extra_contact_fee": True, "agreement_ref": "AGR-C4-DAN"}, result_type=ProgramStatus)
        await st.sleep_until(s.plan.period_end_at + timedelta(hours=2))
        await eventually(lambda: st.status("acme"), lambda x: x.period == 2, "the next period", timeout=30)

        async def ledger() -> list[tuple[int, str, str, Decimal]]:
            async with st.sessions() as session:
                return [(r.period, r.kind, r.agreement_ref, r.quantity)
                        for r in await list_billable_extras(session, "acme")]

        rows = await eventually(ledger, lambda r: len(r) == 2, "the extra contact billed in both periods", timeout=30)
        assert rows == [(1, "extra_contacts", "AGR-C4-DAN", Decimal("1")),
                        (2, "extra_contacts", "AGR-C4-DAN", Decimal("1"))], rows


@pytest.mark.rule("C14", "C16", "E1")
def test_settings_that_put_the_renewal_mails_out_of_order_are_refused() -> None:
    assert renewal_timing_problems(ProgramPolicy()) == []
    with pytest.raises(ValidationError) as err:
        Settings(policy=ProgramPolicy(non_renewal_reminder_days_before_deadline=14))
    assert "rule C16" in str(err.value) and "below 10" in str(err.value)
    with pytest.raises(ValidationError) as err:
        Settings(policy=ProgramPolicy(renewal_notice_days_before_end=95))
    assert "rule C14" in str(err.value) and "by at least 10 days" in str(err.value) and "by 5" in str(err.value)
    with pytest.raises(ValidationError) as err:
        Settings(policy=ProgramPolicy(maintenance_warning_days_before_end=20))
    assert "rule E1" in str(err.value)
    # A notice 120 days before the end with a 21-day reminder is in order.
    assert Settings(policy=ProgramPolicy(renewal_notice_days_before_end=120,
                                         non_renewal_reminder_days_before_deadline=21)).policy is not None
