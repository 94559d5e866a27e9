"""The request's conversation (A4: a request is followed with the customer): a message from either
side goes into the thread, is stored, and mails the other party once. The customer's answer to a
pending request resumes it (A6: pending means waiting for the customer)."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.errors import RuleViolation
    from domain.request import AddComment, AuthorRole, RequestState, RequestStatus
    from domain.rules_request import check_comment

from workflows.request_base import RequestBase
from workflows.update_sequence import refuse


class RequestConversation(RequestBase):
    @workflow.update
    async def add_comment(self, inp: AddComment) -> RequestStatus:
        """A message to the thread; the other side is mailed (the contacts, or the TL and the desk)."""
        async with self._updates(lambda: self._comment_rules(inp)):
            s = self._status
            message = await self._post_message(inp.by, inp.role, inp.via, inp.message, inp.attachments)
            self._record("add_comment", inp.by, inp.via, {"seq": message.seq, "role": inp.role.value,
                                                          "message": inp.message[:200]})
            if inp.role == AuthorRole.customer and s.state == RequestState.pending and s.proposal is None:
                s.pending_reason = None
                await self._set_state(RequestState.open, inp.by, "the customer answered")
            return s

    @add_comment.validator
    def _validate_add_comment(self, inp: AddComment) -> None:
        refuse(self._comment_rules(inp))

    def _comment_rules(self, inp: AddComment) -> list[RuleViolation]:
        return check_comment(self._status, inp, self._input.contacts, self._input.technical_lead.id)
