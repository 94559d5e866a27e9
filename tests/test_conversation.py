"""A request's conversation (A4: a request is followed with the customer), on the time-skipping
server with the real worker, SQLite and the SMTP sink: each message is kept in the workflow's state
and in the database, mails the other side once, and a customer's answer resumes a pending request.
Who may write is checked: a contact of that customer, the request's TL, or staff."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError

from domain.enrolment import Contact
from domain.errors import RuleViolation
from domain.naming import request_workflow_id
from domain.request import PREVIEW_CHARS, THREAD_IN_STATE, AddComment, RequestState, RequestStatus
from domain.rules_request import check_comment
from storage import repositories as repo
from tests.harness import Stack
from tests.test_reassignment import next_business_ten
from tests.test_rules_programme import begin, file_request

CAROL = "carol@acme.example"


async def say(h: WorkflowHandle[Any, Any], by: str, text: str, role: str = "staff") -> RequestStatus:
    result: RequestStatus = await h.execute_update(
        "add_comment", {"by": by, "message": text, "role": role, "via": "portal"}, result_type=RequestStatus)
    return result


async def refused(h: WorkflowHandle[Any, Any], by: str, text: str, role: str) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await say(h, by, text, role)
    return str(err.value.cause)


@pytest.mark.rule("A4")
async def test_messages_go_into_the_thread_mail_the_other_side_once_and_an_answer_resumes(st: Stack) -> None:
    await begin(st)
    number, _ = await file_request(st, next_business_ten(await st.now()), "high")
    h = st.client.get_workflow_handle(request_workflow_id(number))

    # Staff write: the customer's contacts are mailed, the TL copied.
    s = await say(h, "rep-sam", "Could you send the search server's logs?")
    assert [(m.seq, m.by, m.role.value, m.via) for m in s.messages] == [(1, "rep-sam", "staff", "portal")]
    to_customer = await st.sink.wait_for(lambda m: number in str(m["Subject"]) and "from rep-sam" in str(m["Subject"]))
    assert CAROL in str(to_customer[0]["To"]) and "alice@support.example" in str(to_customer[0]["Cc"])
    assert "send the search server's logs" in to_customer[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]

    # Pending, waiting for the customer: the question goes into the thread and to the customer; the
    # customer's answer resumes the request and mails the TL and the desk.
    await h.execute_update("pend", {"by": "rep-sam", "reason": "Which build are you on?"}, result_type=RequestStatus)
    asked = await st.sink.wait_for(lambda m: number in str(m["Subject"]) and "from rep-sam" in str(m["Subject"]),
                                   count=2)
    assert "Which build are you on?" in asked[1].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    s = await say(h, CAROL, "Logs attached to the portal, see ticket.", role="customer")
    assert s.state == RequestState.open and s.pending_reason is None
    assert (s.history[-1].from_state, s.history[-1].to_state, s.history[-1].by) == (
        RequestState.pending, RequestState.open, CAROL)
    to_tl = await st.sink.wait_for(lambda m: number in str(m["Subject"]) and f"from {CAROL}" in str(m["Subject"]))
    assert "alice@support.example" in str(to_tl[0]["To"]) and st.policy.support_desk_mailbox in str(to_tl[0]["Cc"])

    # Anyone else is refused, naming the rule and who; nothing is stored, nobody is mailed.
    mails_before = len(st.sink.messages)
    stranger = await refused(h, "eve@elsewhere.example", "hello", "customer")
    assert "A4" in stranger and "eve@elsewhere.example is not a contact of customer acme" in stranger, stranger
    not_tl = await refused(h, "tl-bob", "hello", "technical_lead")
    assert "tl-bob is not the Technical Lead" in not_tl, not_tl

    assert len(st.sink.messages) == mails_before
    status = await h.query("get_status", result_type=RequestStatus)
    assert [(m.seq, m.by, m.text) for m in status.messages] == [
        (1, "rep-sam", "Could you send the search server's logs?"), (2, "rep-sam", "Which build are you on?"),
        (3, CAROL, "Logs attached to the portal, see ticket.")]
    async with st.sessions() as session:
        stored = await repo.list_messages(session, number)
    assert [(r.seq, r.by, r.role, r.via, r.text) for r in stored] == [
        (1, "rep-sam", "staff", "portal", "Could you send the search server's logs?"),
        (2, "rep-sam", "staff", "temporal", "Which build are you on?"),
        (3, CAROL, "customer", "portal", "Logs attached to the portal, see ticket.")]
    # Each message mailed once, whatever retries happened.
    assert len(st.mails("a message from rep-sam")) == 2 and len(st.mails(f"a message from {CAROL}")) == 1


def _status(state: RequestState) -> RequestStatus:
    now = datetime(2027, 3, 1, 9, tzinfo=UTC)
    return RequestStatus.model_validate({
        "tracking_number": "TC-ACME-2027-0001", "customer_id": "acme", "workflow_id": "request-TC-ACME-2027-0001",
        "kind": "support", "priority": "high", "summary": "x", "state": state, "opened_at": now,
        "first_response_deadline": now + timedelta(hours=1)})


@pytest.mark.rule("A4")
def test_check_comment_refuses_closed_requests_blank_text_and_strangers() -> None:
    contacts = [Contact(name="Carol Diaz", email=CAROL, role="CIO")]

    def check(state: RequestState, **inp: Any) -> list[RuleViolation]:
        return check_comment(_status(state), AddComment.model_validate({"by": "rep-sam", "message": "hi", **inp}),
                             contacts, "tl-alice")

    assert check(RequestState.open) == []
    assert check(RequestState.open, by="CAROL@ACME.example", role="customer") == []  # addresses ignore case
    assert check(RequestState.open, by="tl-alice", role="technical_lead") == []
    assert "is closed" in check(RequestState.closed)[0].message
    assert check(RequestState.open, message="   ")[0].field == "message"
    assert check(RequestState.open, by="eve@x.example", role="customer")[0].rule == "A4"


@pytest.mark.rule("A4")
async def test_the_workflow_keeps_previews_of_the_latest_messages_and_the_database_the_whole_thread(
    st: Stack,
) -> None:
    """A thread kept whole in the workflow's state would go into every save and Update result and grow
    the history without bound: the state keeps the latest THREAD_IN_STATE messages, each cut to a preview."""
    await begin(st)
    number, _ = await file_request(st, next_business_ten(await st.now()), "high")
    h = st.client.get_workflow_handle(request_workflow_id(number))
    long_text = "log line\n" * 1000  # 9,000 characters
    s = await say(h, "rep-sam", long_text)
    assert s.messages[0].text == long_text[:PREVIEW_CHARS] + " [...]"
    for n in range(THREAD_IN_STATE):
        s = await say(h, "rep-sam", f"note {n}")
    assert s.message_count == THREAD_IN_STATE + 1 and len(s.messages) == THREAD_IN_STATE
    assert [m.seq for m in s.messages] == list(range(2, THREAD_IN_STATE + 2))
    async with st.sessions() as session:
        stored = await repo.list_messages(session, number)
    assert len(stored) == THREAD_IN_STATE + 1 and stored[0].text == long_text
