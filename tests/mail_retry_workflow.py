"""A minimal workflow that sends one mail through the `send_mail` activity (for test_mail_retry.py).

It lives in an importable module because the workflow sandbox refuses `__main__` definitions.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from domain.activities import MailRequest, MailResult

# Short, fixed backoff: the time-skipping server makes even this instant, and the test is about the count.
MAIL_RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=1.0,
    maximum_attempts=5,
    non_retryable_error_types=["PermanentMailError"],
)


@workflow.defn
class MailRetryWorkflow:
    @workflow.run
    async def run(self, request: MailRequest) -> MailResult:
        # By name, not by method reference: importing activities.mail would pull SQLAlchemy
        # and aiosmtplib into the workflow sandbox.
        result: MailResult = await workflow.execute_activity(
            "send_mail",
            request,
            result_type=MailResult,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=MAIL_RETRY_POLICY,
            summary=f"mail {request.template}",
        )
        return result
