"""Two customers, their users and data, for the portal's tests (API over ASGI, and the browser test)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

import httpx
from temporalio.service import RPCError, RPCStatusCode

from domain.calendar import BusinessCalendar
from domain.enrolment import TechnicalLead
from domain.money import Money
from domain.program import Phase, ProgramStatus
from domain.request import NewRequest, RequestStatus
from storage import repositories as repo
from storage import users as users_repo
from storage.credentials import digest, hash_password, new_api_token
from storage.db import SessionFactory
from storage.tables import RequestAttachmentRow
from storage.users import Role

PASSWORD = "correct horse battery"


class InProcess:
    """A portal app served in process: `client()` talks to it over ASGI."""

    app: Any

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://portal.test")


@lru_cache(maxsize=1)
def password_hash() -> str:
    return hash_password(PASSWORD)  # argon2 is slow on purpose: hash once per test run


# When the seeded rows were written: a fixed instant in the past, so that what derives from it (the
# seeded request's one-hour first-response deadline has passed: "breached") is the same on any run date.
NOW = datetime(2025, 3, 17, 10, 30, tzinfo=UTC)


@dataclass
class Tenant:
    customer_id: str
    document_id: int
    tracking_number: str
    contact_email: str
    tl_email: str
    tl_id: str
    attachment_id: int = 0  # a file of the request's thread
    tokens: dict[str, str] = field(default_factory=dict)  # e-mail -> API token
    token_ids: dict[str, int] = field(default_factory=dict)


def programme_status(customer_id: str, tl: str) -> ProgramStatus:
    return ProgramStatus(
        customer_id=customer_id, customer_name=f"{customer_id.title()} Corp", workflow_id=f"program-{customer_id}",
        period=1, phase=Phase.onboarding, calendar=BusinessCalendar(),
        technical_lead=TechnicalLead(id=tl, name=tl.removeprefix("tl-").title(), email=f"{tl}@support.example"),
        annual_fee=Money(amount=Decimal("48000.00")),
    )


async def seed_tenant(sessions: SessionFactory, customer_id: str, tl_id: str) -> Tenant:
    """A customer with a programme led by `tl_id`, a document, a request, a contact and its TL as users."""
    contact = f"carol@{customer_id}.example"
    tl_email = f"{tl_id}@support.example"
    tracking = f"TC-{customer_id.upper()}-2027-0001"
    async with sessions() as s, s.begin():
        await repo.upsert_customer(s, customer_id, f"{customer_id.title()} Corp", f"SMP-{customer_id}", now=NOW)
        await repo.upsert_programme(s, programme_status(customer_id, tl_id), now=NOW)
        doc = await repo.insert_document(
            s, customer_id=customer_id, period=1, kind="welcome", title=f"Welcome, {customer_id}",
            body_text="Welcome", body_html=f"<html><body><h1>Welcome {customer_id}</h1></body></html>",
            idempotency_key=f"doc-{customer_id}-welcome", now=NOW)
        new = NewRequest(customer_id=customer_id, kind="support", priority="high", summary="Search is slow",
                         filed_by=contact, channel="portal")
        await repo.upsert_request(s, request=new, period=1, status=RequestStatus(
            tracking_number=tracking, workflow_id=f"request-{tracking}", customer_id=customer_id, kind="support",
            priority="high", summary="Search is slow", opened_at=NOW,
            first_response_deadline=NOW + timedelta(hours=1)), now=NOW)
        attachment = RequestAttachmentRow(tracking_number=tracking, part=1, filename="log.txt",
                                          content_type="text/plain", size=4, content=b"log\n", created_at=NOW)
        s.add(attachment)
        await s.flush()
        tenant = Tenant(customer_id, doc.row.id, tracking, contact, tl_email, tl_id, attachment.id)
        await users_repo.add_user(s, email=contact, name="Carol Diaz", role=Role.contact, customer_id=customer_id,
                                  password_hash=password_hash())
        await users_repo.add_user(s, email=tl_email, name=tl_id, role=Role.tl, technical_lead_id=tl_id,
                                  password_hash=password_hash())
        for email in (contact, tl_email):
            user = await users_repo.get_user_by_email(s, email)
            assert user is not None
            token, prefix = new_api_token()
            row = await users_repo.create_api_token(s, user_id=user.id, name="test", token_hash=digest(token),
                                                    prefix=prefix)
            tenant.tokens[email], tenant.token_ids[email] = token, row.id
    return tenant


async def add_staff(sessions: SessionFactory, email: str, role: Role) -> None:
    async with sessions() as s, s.begin():
        await users_repo.add_user(s, email=email, name=email.split("@")[0].title(), role=role,
                                  password_hash=password_hash())


CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF_RE.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


async def sign_in(http: httpx.AsyncClient, email: str, password: str = PASSWORD) -> str:
    """Sign in through the login form; returns the session's CSRF token."""
    page = await http.get("/login")
    response = await http.post("/login", data={"email": email, "password": password,
                                               "csrf_token": csrf_of(page.text), "next": "/account"})
    assert response.status_code == 303, response.text
    account = await http.get("/account")
    assert account.status_code == 200
    return csrf_of(account.text)


class UnreachableTemporal:
    """Stands in for the Temporal client where a test must not reach it: any use is 'unavailable'."""

    calls: list[str]

    def __init__(self) -> None:
        self.calls = []

    def _fail(self, name: str) -> Any:
        self.calls.append(name)
        raise RPCError("Temporal is not part of this test", RPCStatusCode.UNAVAILABLE, b"")

    def get_workflow_handle(self, workflow_id: str, **_: Any) -> Any:
        client = self

        class Handle:
            def __getattr__(self, name: str) -> Any:
                async def call(*_a: Any, **_k: Any) -> Any:
                    return client._fail(f"{workflow_id}.{name}")
                return call

        return Handle()

    def list_workflows(self, *_a: Any, **_k: Any) -> Any:
        return self._fail("list_workflows")

    async def start_workflow(self, *_a: Any, **_k: Any) -> Any:
        return self._fail("start_workflow")

    async def execute_update(self, *_a: Any, **_k: Any) -> Any:
        return self._fail("execute_update")
