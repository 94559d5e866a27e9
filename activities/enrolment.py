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
        """Rules D10/A9: the welcome document filed first (an SMTP outage must not keep it from the workspace),
        then each mail as `send_mail` sends it.

        Each part has its turn whatever happens to the others, as when they were three activities: a filing that
        fails does not hold the mails back, nor does a mail the relay cannot take yet hold back the next one. The
        first such error is raised once all have had their turn, and the retry answers "already sent" from the
        outbox for what went. A mail refused for good is reported in its outcome, and a retry does not offer it
        to the relay again.
        """
        errors: list[Exception] = []
        document: DocumentRef | None = None
        activity.heartbeat("welcome document")
        try:
            document = await self._documents.file_document(welcome.document)
        except Exception as err:  # raised below, once the mails have had their turn
            activity.logger.warning("welcome document %s not filed: %r", welcome.document.idempotency_key, err)
            errors.append(err)
        mails: list[MailOutcome] = []
        for mail in welcome.mails:
            activity.heartbeat(f"mail {mail.idempotency_key}")
            try:
                mails.append(await self._send(mail))
            except Exception as err:  # raised below, once the other mails have had their turn
                activity.logger.warning("welcome mail %s not sent: %r", mail.idempotency_key, err)
                errors.append(err)
        if errors:
            raise errors[0]
        assert document is not None, "filed, or its error was raised above"
        return WelcomeSent(document=document, mails=mails)

    async def _send(self, mail: MailRequest) -> MailOutcome:
        if activity.info().attempt > 1:
            # Refused for good by an earlier attempt: the same message would be refused again (a `send_mail` of its
            # own was never retried after a refusal).
            refused = await self._mail.refusal(mail.idempotency_key)
            if refused is not None:
                return MailOutcome(idempotency_key=mail.idempotency_key, refused=refused)
        try:
            return MailOutcome(idempotency_key=mail.idempotency_key, result=await self._mail.send_mail(mail))
        except ApplicationError as err:
            if not err.non_retryable:
                raise
            # What the workflow records when a `send_mail` activity of its own fails the same way.
            return MailOutcome(idempotency_key=mail.idempotency_key, refused=str(err))
