"""`prepare_enrolment` (activities/enrolment.py): the enrolment's check, plan and default due dates in one call.

Since the patch `enrolment-prepared-in-one-call` a new programme's run takes its plan and its steps' default due
dates from this one result, where runs enrolled before called `check_enrolment`, `plan_period` and
`schedule_deadlines` in turn. Both paths must give a programme the same dates, and a refused enrolment nothing to
plan (E1, C2, C5, C14, C16).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from temporalio.testing import ActivityEnvironment

from config.settings import Settings
from domain.activities import DeadlineRequest, EnrolmentCheckRequest, EnrolmentPreparation, PlanPeriodRequest
from domain.due_dates import default_deadlines
from domain.enrolment import Enrolment
from domain.policy import ProgramPolicy
from domain.steps import DueFrom, Workflow
from storage.db import SessionFactory
from tests.test_db_activities import add_subscription, enrolment
from worker import build_activities


def preparation(e: Enrolment, policy: ProgramPolicy) -> EnrolmentPreparation:
    return EnrolmentPreparation(
        check=EnrolmentCheckRequest(enrolment=e, policy=policy),
        plan=PlanPeriodRequest(calendar=e.calendar, period=1, period_start=e.period_start, term_months=e.term_months,
                               policy=policy),
        reminder_business_days=policy.step_reminder_business_days)


@pytest.mark.rule("C5")
@pytest.mark.rule("C14")
@pytest.mark.rule("C16")
async def test_an_accepted_enrolment_gets_the_plan_and_due_dates_of_the_three_calls_it_replaces(
        sessions: SessionFactory, tmp_path: Path) -> None:
    await add_subscription(sessions)
    acts = build_activities(Settings(data_dir=tmp_path), sessions)
    database, calendar = acts.database, acts.calendar
    # A French calendar with public holidays in the first weeks (1 and 8 May, Ascension): business days matter (C5).
    e, policy = enrolment(period_start=date(2027, 5, 3)), ProgramPolicy(step_reminder_business_days=3)
    prepared = await ActivityEnvironment().run(acts.enrolment.prepare_enrolment, preparation(e, policy))

    req = preparation(e, policy)
    check = await database.check_enrolment(req.check)
    plan = await calendar.plan_period(req.plan)
    deadlines = await calendar.schedule_deadlines(DeadlineRequest(
        calendar=e.calendar, items=default_deadlines(Workflow.program, {DueFrom.period_start: plan.period_start},
                                                     policy), reminder_business_days=3))
    assert prepared.check == check and check.accepted
    assert prepared.plan == plan
    assert prepared.default_deadlines == deadlines
    assert len(deadlines.items) == len(default_deadlines(
        Workflow.program, {DueFrom.period_start: plan.period_start}, policy)) > 0  # not an empty comparison


@pytest.mark.rule("E1")
async def test_a_refused_enrolment_is_neither_planned_nor_given_due_dates(sessions: SessionFactory,
                                                                          tmp_path: Path) -> None:
    await add_subscription(sessions, end=date(2027, 6, 30))  # E1: ends inside the period
    prepare = build_activities(Settings(data_dir=tmp_path), sessions).enrolment.prepare_enrolment
    prepared = await prepare(preparation(enrolment(), ProgramPolicy()))
    assert [v.rule for v in prepared.check.violations] == ["E1"]
    assert prepared.plan is None and prepared.default_deadlines is None
