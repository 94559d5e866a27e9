"""The request's conversation (A4: a request is followed with the customer): a message from either
side goes into the thread, is stored, and mails the other party once. The customer's answer to a
pending request resumes it (A6: pending means waiting for the customer)."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.activities import MessageRecord
    from domain.errors import RuleViolation
    from domain.request import AddComment, AuthorRole, Message, RequestState, RequestStatus
    from domain.rules_request import check_comment
    from workflows import activity_calls as act

from workflows.request_base import RequestBase
from workflows.update_sequence import refuse


class RequestConversation(RequestBase):
    @workflow.update
    async def add_comment(self, inp: AddComment) -> RequestStatus:
        """A message to the thread; the other side is mailed (the contacts, or the TL and the desk)."""
        async with self._updates(lambda: self._comment_rules(inp)):
            s = self._status
            message = Message(seq=len(s.messages) + 1, at=workflow.now(), by=inp.by, role=inp.role, via=inp.via,
                              text=inp.message)
            s.messages.append(message)
            await act.record_message(MessageRecord(tracking_number=s.tracking_number, message=message),
                                     summary=f"Message {message.seq} from {inp.by} ({inp.role.value})")
            self._record("add_comment", inp.by, inp.via, {"seq": message.seq, "role": inp.role.value,
                                                          "message": inp.message[:200]})
            if inp.role == AuthorRole.customer and s.state == RequestState.pending:
                s.pending_reason = None
                await self._set_state(RequestState.open, inp.by, "the customer answered")
            await self._mail_message(message)
            return s

    @add_comment.validator
    def _validate_add_comment(self, inp: AddComment) -> None:
        refuse(self._comment_rules(inp))

    def _comment_rules(self, inp: AddComment) -> list[RuleViolation]:
        return check_comment(self._status, inp, self._input.contacts, self._input.technical_lead.id)

    async def _mail_message(self, message: Message) -> None:
        """The other party, once (the mail's idempotency key is the message's number)."""
        i = self._input
        context = {"message": message.model_dump(mode="json")}
        if message.role == AuthorRole.customer:
            await self._mail([i.technical_lead.email], "request_message", f"message-{message.seq}", context,
                             cc=[i.policy.support_desk_mailbox])
        else:
            await self._mail([str(c.email) for c in i.contacts], "request_message", f"message-{message.seq}",
                             context, cc=[i.technical_lead.email])
