"""Where opening a request reads its programme from (starter/requests.py: `live_programme`).

Temporal says whether the programme's run is open; its state (TL, contacts, calendar) comes from the projection
when that says the programme is live, and from the workflow (`get_status`) when the projection is missing or says
otherwise. The request's first mail goes to the TL it was opened with, so the mail shows which source was read.
"""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

from sqlalchemy import delete, select

from domain.naming import program_workflow_id
from storage.tables import ProgrammeRow
from tests.harness import Stack, eventually
from tests.request_fixtures import file, live_programme

PROJECTED_TL = "projected-tl@support.example"


async def change_projection(st: Stack, customer: str, *, tl_email: str | None = None,
                            phase: str | None = None) -> None:
    async with st.sessions() as session, session.begin():
        row = (await session.execute(select(ProgrammeRow).where(ProgrammeRow.customer_id == customer))).scalar_one()
        status: dict[str, Any] = dict(row.status)
        if tl_email is not None:
            status["technical_lead"] = {**status["technical_lead"], "email": tl_email}
        if phase is not None:
            status["phase"] = row.phase = phase
        row.status = status


async def opening_mail(st: Stack, number: str) -> EmailMessage:
    async def probe() -> list[EmailMessage]:
        return st.mails(template_subject=number)

    found = await eventually(probe, lambda ms: len(ms) == 1, f"the opening mail of {number}",
                             shown=lambda ms: str([(str(m["To"]), str(m["Subject"])) for m in st.mails()]))
    return found[0]


async def test_a_live_programme_is_read_from_its_projection_without_asking_its_run(st: Stack) -> None:
    programme = await live_programme(st)
    await change_projection(st, "acme", tl_email=PROJECTED_TL)
    number, _ = await file(st)
    assert str((await opening_mail(st, number))["To"]) == PROJECTED_TL
    assert programme.technical_lead.email != PROJECTED_TL


async def test_a_projection_that_is_missing_or_not_live_is_not_trusted_the_workflow_is_asked(st: Stack) -> None:
    programme = await live_programme(st)
    await change_projection(st, "acme", tl_email=PROJECTED_TL, phase="closed")
    first, _ = await file(st)
    assert str((await opening_mail(st, first))["To"]) == programme.technical_lead.email
    async with st.sessions() as session, session.begin():
        await session.execute(delete(ProgrammeRow).where(ProgrammeRow.workflow_id == program_workflow_id("acme")))
    second, _ = await file(st)
    assert str((await opening_mail(st, second))["To"]) == programme.technical_lead.email
