"""One period's billable extras end to end, on the time-skipping server (rules C1, C3, C4, C5, C10, C13): OT's
price list imported with `techconnect prices import`, then an additional system, sixteen contacts with the fee
accepted, an out-of-hours agreement, an extra call, an extra report and a customisation request under an
agreement. Each lands in the ledger once, priced from the list; `extras list --json` and `extras export` show
the same rows; replaying the workflows and re-running every recording activity adds nothing."""

from __future__ import annotations

import csv
import io
from datetime import datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from activities.db import DatabaseActivities
from domain.activities import ExtraRecord
from domain.cycle import CycleStatus
from domain.naming import request_workflow_id
from domain.request import NewRequest
from starter.requests import open_request
from storage.ledger import LEDGER_COLUMNS
from storage.repositories import list_billable_extras
from tests.clock import settled
from tests.harness import Cli, Stack, add_subscription, cli_environ, enrolment, eventually, stack
from worker import workflow_runner
from workflows.monthly_cycle import MonthlyCycleWorkflow
from workflows.program import ProgramWorkflow
from workflows.support_request import SupportRequestWorkflow

PARIS = ZoneInfo("Europe/Paris")
# kind: (basis, unit price, the agreement the scenario gives it, the rule it is billed under)
PRICES: dict[str, tuple[str, str, str, str]] = {
    "additional_system": ("period", "5000.00", "AGR-SYS-1", "C1"),
    "extra_contacts": ("unit", "300.00", "AGR-CON-1", "C4"),
    "extended_hours": ("month", "400.00", "AGR-OOH-1", "C5"),
    "extra_call": ("unit", "333.33", "AGR-CALL-1", "C10"),
    "extra_report": ("unit", "250.00", "AGR-REP-1", "C10"),
    "customisation": ("unit", "1200.00", "AGR-CUS-1", "C13"),
}
TERM = {"term_months": 4, "written_agreement_ref": "AGR-SHORT-4"}  # rule C2: a written agreement


def price_csv(effective_from: str) -> str:
    lines = ["kind,basis,unit_price,currency,effective_from,description"]
    lines += [f"{kind},{basis},{price},EUR,{effective_from},{kind} (OT price list)"
              for kind, (basis, price, _, _) in PRICES.items()]
    return "\n".join(lines) + "\n"


async def recording_inputs(handle: WorkflowHandle[Any, Any], st: Stack) -> list[ExtraRecord]:
    events = [e async for e in handle.fetch_history_events()]
    scheduled = [e.activity_task_scheduled_event_attributes for e in events
                 if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
                 and e.activity_task_scheduled_event_attributes.activity_type.name == "record_billable_extra"]
    out: list[ExtraRecord] = []
    for attrs in scheduled:
        [record] = await st.client.data_converter.decode(attrs.input.payloads, [ExtraRecord])
        out.append(record)
    return out


@pytest.mark.rule("C1", "C3", "C4", "C5", "C10", "C13")
async def test_one_period_bills_each_extra_once_from_the_price_list(
    env: WorkflowEnvironment, tmp_path: Path, sqlite_url: str,
) -> None:
    async with stack(env, sqlite_url, tmp_path) as st:
        cli = Cli(cli_environ(st))
        today = (await st.now()).astimezone(PARIS).date()
        prices = tmp_path / "prices.csv"
        prices.write_text(price_csv((today - timedelta(days=30)).isoformat()), encoding="utf-8")
        imported = await cli("prices", "import", str(prices), "--by", "ops-olga")
        assert imported.code == 0, str(imported)

        # 10 contacts on the customer's maintenance subscriptions + 1 primary + 5 additional = 16 (C4).
        await add_subscription(st.sessions, "acme", today - timedelta(days=30), today + timedelta(days=800),
                               contact_count=10)
        contacts = [{"name": f"Contact {i}", "email": f"c{i}@acme.example"} for i in range(5)]
        e = enrolment(
            "acme", today, **TERM, additional_contacts=contacts, accept_extra_contact_fees=True,
            extra_contacts_agreement_ref=PRICES["extra_contacts"][2],
            additional_systems=["CS disaster recovery"],
            additional_systems_agreement_ref=PRICES["additional_system"][2],
            calendar={"timezone": "Europe/Paris", "country": "FR",
                      "out_of_hours_agreement_ref": PRICES["extended_hours"][2]})
        program = await st.start(e)
        s = await st.wait_enrolled("acme")
        assert s.plan is not None

        # The first month: the included call, then an extra call and an extra report (C10).
        await st.sleep_until(s.plan.month_start_ats[0] + timedelta(minutes=1))
        await eventually(lambda: st.status("acme"), lambda x: x.cycles[0].status == "running", "first cycle",
                         timeout=30)
        cycle = st.client.get_workflow_handle(s.cycles[0].workflow_id)
        month_start = s.plan.month_starts[0]

        async def cupd(name: str, payload: dict[str, Any]) -> CycleStatus:
            result: CycleStatus = await cycle.execute_update(name, {"by": "tl-alice", **payload},
                                                             result_type=CycleStatus)
            return result

        call_at = datetime.combine(month_start + timedelta(days=7), time(14), PARIS)
        await cupd("schedule_call", {"call_at": call_at.isoformat()})
        await cupd("hold_call", {"held_on": (month_start + timedelta(days=7)).isoformat(), "attendees": ["Carol"],
                                 "notes": "Reviewed the open requests."})
        await cupd("record_extra_call", {"held_on": (month_start + timedelta(days=9)).isoformat(),
                                         "notes": "Escalation review", "agreement_ref": PRICES["extra_call"][2]})
        await cupd("record_extra_report", {"delivered_on": (month_start + timedelta(days=10)).isoformat(),
                                           "description": "Patch readiness review",
                                           "agreement_ref": PRICES["extra_report"][2]})

        # A customisation request under its agreement (C13).
        settings = st.settings.model_copy(update={"task_queue": st.task_queue})
        number = await open_request(st.client, settings, NewRequest.model_validate({
            "customer_id": "acme", "kind": "support", "priority": "medium", "filed_by": "carol",
            "summary": "Custom workflow step for invoices", "customisation": True,
            "agreement_ref": PRICES["customisation"][2]}), now=await st.now(), sessions=st.sessions)
        request = st.client.get_workflow_handle(request_workflow_id(number))

        async def ledger() -> list[Any]:
            async with st.sessions() as session:
                return list(await list_billable_extras(session, "acme", period=1))

        async def kinds() -> list[str]:
            return sorted(r.kind for r in await ledger())

        await eventually(kinds, lambda k: len(k) >= len(PRICES), f"one extra of each kind {sorted(PRICES)}", timeout=30)
        await settled(program, env)

        listed = await cli("extras", "list", "acme", "--period", "1", "--json")
        assert listed.code == 0, str(listed)
        lines = listed.json()
        assert sorted(x["kind"] for x in lines) == sorted(PRICES), lines  # each extra once
        for x in lines:
            basis, price, agreement, rule = PRICES[x["kind"]]
            assert (x["rule"], x["agreement_ref"], x["price_basis"]) == (rule, agreement, basis), x
            assert Decimal(x["unit_price"]) == Decimal(price), x  # from the imported list
            assert Decimal(x["amount"]) == (Decimal(x["quantity"]) * Decimal(price)).quantize(Decimal("0.01")), x
        by_kind = {x["kind"]: x for x in lines}
        assert Decimal(by_kind["extra_contacts"]["quantity"]) == 1  # one contact over fifteen
        assert Decimal(by_kind["extended_hours"]["amount"]) == Decimal("1600.00")  # 4 months at 400.00

        # Finance's export: the same rows as CSV, with stable columns.
        start_day = (s.plan.period_start - timedelta(days=1)).isoformat()
        end_day = ((await st.now()).date() + timedelta(days=1)).isoformat()
        exported = await cli("extras", "export", "--from", start_day, "--to", end_day, "--format", "csv")
        assert exported.code == 0, str(exported)
        table = list(csv.DictReader(io.StringIO(exported.out)))
        assert list(table[0]) == list(LEDGER_COLUMNS)
        exported_rows = sorted((r for r in table if r["period"] == "1"), key=lambda r: int(r["id"]))
        listed_rows = sorted(lines, key=lambda x: int(x["id"]))
        assert len(exported_rows) == len(listed_rows) == len(PRICES)
        for row, x in zip(exported_rows, listed_rows, strict=True):
            assert row == {c: "" if x[c] is None else str(x[c]) for c in LEDGER_COLUMNS}, (row, x)

        # Every workflow replays (same commands: no second recording scheduled), and every recording activity
        # run again with its recorded input (a retry after a lost answer) finds its row and adds none.
        before = [(r.id, r.idempotency_key, r.amount) for r in await ledger()]
        replayer = Replayer(workflows=[ProgramWorkflow, MonthlyCycleWorkflow, SupportRequestWorkflow],
                            data_converter=st.client.data_converter, workflow_runner=workflow_runner())
        acts = DatabaseActivities(st.sessions)
        recorded = 0
        for handle in (program, cycle, request):
            await replayer.replay_workflow(await handle.fetch_history())
            for record in await recording_inputs(handle, st):
                ack = await acts.record_billable_extra(record)
                assert "already recorded" in ack.detail, ack
                recorded += 1
        assert recorded == len(PRICES)
        assert [(r.id, r.idempotency_key, r.amount) for r in await ledger()] == before
