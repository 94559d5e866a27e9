"""The enrolment's own activities, each standing for several calls it makes in one task.

- `prepare_enrolment`: the check (a read) and the calendar maths. A new programme's first workflow task runs it as
  a local activity (workflows/program.py, `enrolment-prepared-in-one-call`): one result wakes the run once, where
  the three calls it stands for woke it three times. It only reads and computes, so running it again (a retry, a
  workflow task retried after a worker died) gives the same answer; docs/local-activities.md.
- `send_welcome`: the welcome document and the enrolment's two mails (`welcome-in-one-activity`). One activity
  task, and one workflow task for its result, where three activities woke the run up to three times. A regular
  activity, as every mail is: each mail keeps its outbox row and key, so a retry sends only what is not sent.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.calendar import CalendarActivities
from activities.db import DatabaseActivities
from activities.documents import DocumentActivities
from activities.mail import MailActivities
from domain.activities import (
    DeadlineRequest,
    DocumentRef,
    EnrolmentPreparation,
    MailOutcome,
    MailRequest,
    PreparedEnrolment,
    Welcome,
    WelcomeSent,
)
from domain.due_dates import default_deadlines
from domain.steps import DueFrom, Workflow


class EnrolmentActivities:
    """Built in worker.py from the activities whose calls it makes."""

    def __init__(self, database: DatabaseActivities, calendar: CalendarActivities, documents: DocumentActivities,
                 mail: MailActivities) -> None:
        self._database = database
        self._calendar = calendar
        self._documents = documents
        self._mail = mail

    @activity.defn
    async def prepare_enrolment(self, request: EnrolmentPreparation) -> PreparedEnrolment:
        """Rules E1, C2, C4 (the check); C5, C14, C16 (the plan); the steps' default due dates in business days."""
        check = await self._database.check_enrolment(request.check)
        if check.violations:
            return PreparedEnrolment(check=check)
        plan = await self._calendar.plan_period(request.plan)
        # The same items the workflow computed itself before the patch (domain/due_dates.py).
        items = default_deadlines(Workflow.program, {DueFrom.period_start: plan.period_start}, request.plan.policy)
        deadlines = await self._calendar.schedule_deadlines(DeadlineRequest(
            calendar=request.plan.calendar, items=items, reminder_business_days=request.reminder_business_days))
        return PreparedEnrolment(check=check, plan=plan, default_deadlines=deadlines)

    @activity.defn
    async def send_welcome(self, welcome: Welcome) -> WelcomeSent:
        """Rules D10/A9: the welcome document filed first (an SMTP outage must not keep it from the
        workspace), then each mail as `send_mail` sends it.

        A filing that fails does not hold the mails back: they go, and then its error is raised for the retry,
        where they answer "already sent" from their outbox rows. A mail refused for good is reported in its
        outcome; any other error (the relay or the database unreachable) is raised, and the retry resends only
        what is not sent yet.
        """
        document: DocumentRef | None = None
        filing_error: Exception | None = None
        try:
            document = await self._documents.file_document(welcome.document)
        except Exception as err:  # raised again below, once the mails have had their turn
            filing_error = err
        mails = [await self._send(mail) for mail in welcome.mails]
        if filing_error is not None:
            raise filing_error
        assert document is not None, "filed, or its error was raised above"
        return WelcomeSent(document=document, mails=mails)

    async def _send(self, mail: MailRequest) -> MailOutcome:
        try:
            return MailOutcome(idempotency_key=mail.idempotency_key, result=await self._mail.send_mail(mail))
        except ApplicationError as err:
            if not err.non_retryable:
                raise
            # What the workflow records when a `send_mail` activity of its own fails the same way.
            return MailOutcome(idempotency_key=mail.idempotency_key, refused=str(err))
