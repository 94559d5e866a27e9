"""Activities that read and write the application database.

Every write is idempotent: keys come from the workflow's own identity (workflow ID,
period, time of the event recorded in history), so a retried activity, or one run
again after a worker was killed, finds its earlier rows instead of adding new ones.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity

from activities.faults import PROJECTION_AFTER_COMMIT, REGISTRATION_AFTER_COMMIT, maybe_crash
from config.calendar import supported_countries
from domain.activities import (
    Ack,
    AuditEntry,
    CloseWorkspace,
    CycleProjection,
    EnrolmentCheckRequest,
    EnrolmentCheckResult,
    ExtraRecord,
    ProjectionUpdate,
    RegisterProgramme,
    WorkspaceRef,
)
from domain.enrolment import Contact, check_enrolment, check_maintenance
from domain.inbox import cycle_open_steps, programme_open_steps
from domain.prices import price_extra
from domain.program import Phase
from storage.db import SessionFactory
from storage.repositories.audit import append_audit
from storage.repositories.clock import as_utc, at_or_now
from storage.repositories.common import Inserted, RowT
from storage.repositories.customers import (
    deactivate_contacts,
    ensure_customer,
    get_subscription,
    registry_contact_count,
    subscription_model,
    sync_contacts,
    upsert_customer,
)
from storage.repositories.extras import insert_billable_extra
from storage.repositories.open_steps import replace_open_steps
from storage.repositories.prices import price_effective_on
from storage.repositories.programmes import archive_workspace, create_workspace, upsert_programme, workspace_id_for
from storage.tables import BillableExtraRow

# D10: a refused enrolment never opened the workspace: its contacts get no access. A closed programme's
# contacts keep what `close_workspace` left them (read-only for some days, or nothing): its projection
# neither revokes nor gives back.
_NO_ACCESS_PHASES = {Phase.refused}
_ACCESS_DECIDED_BY_CLOSE = {Phase.closed}


def audit_key(workflow_id: str, entry: AuditEntry) -> str:
    """Stable key of an audit entry: the same entry sent again (retry, cumulative list) is stored once.

    Entries written in one workflow task share `at` (workflow time), so the digest of the
    whole entry tells apart two different actions recorded at the same instant.
    """
    digest = hashlib.sha256(json.dumps(entry.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]
    # workflow_id <= 128 and action <= 64 chars (tables.py), so the key fits its 255.
    return f"{workflow_id}:{entry.at.isoformat()}:{entry.action}:{digest}"


async def append_audit_entries(session: AsyncSession, workflow_id: str, entries: list[AuditEntry]) -> int:
    """People's actions recorded by a workflow, each stored once (keyed by `audit_key`); returns how many were new."""
    added = 0
    for entry in entries:
        added += (await append_audit(session, entry, idempotency_key=audit_key(workflow_id, entry))).created
    return added


def audit_note(added: int) -> str:
    return f"{added} new audit entr{'y' if added == 1 else 'ies'}"


def recorded(what: str, created: bool) -> Ack:
    """The answer of an idempotent write: a retry says it found the row written the first time."""
    return Ack(detail=f"{what} " + ("recorded" if created else "already recorded"))


async def record_once(sessions: SessionFactory, write: Callable[[AsyncSession], Awaitable[Inserted[RowT]]],
                      what: Callable[[RowT], str]) -> Ack:
    """One idempotent insert in its own transaction, answered by `recorded` (`what` names the row)."""
    async with sessions() as session, session.begin():
        result = await write(session)
    return recorded(what(result.row), result.created)


def priced_as(row: BillableExtraRow) -> str:
    if row.amount is None:
        return "unpriced"
    return f"{row.currency} {row.amount:.2f}" + (", override" if row.override_reason else "")


def _merge_contacts(*groups: list[Contact]) -> list[Contact]:
    seen: dict[str, Contact] = {}
    for group in groups:
        for contact in group:
            seen.setdefault(str(contact.email).lower(), contact)
    return list(seen.values())


class DatabaseActivities:
    def __init__(self, session_factory: SessionFactory) -> None:
        self._session_factory = session_factory

    @activity.defn
    async def check_enrolment(self, request: EnrolmentCheckRequest) -> EnrolmentCheckResult:
        """Rules E1, C2, C4, C5, C8, C9, C1, C15 at enrolment; only E1 at a renewal."""
        enrolment = request.enrolment
        async with self._session_factory() as session:
            row = await get_subscription(session, enrolment.customer.maintenance_subscription_id)
            registry_contacts = await registry_contact_count(session, enrolment.customer.id, enrolment.period_start)
        subscription = subscription_model(row) if row is not None else None
        if request.period > 1:
            # rule E1 "re-checked at every renewal": the rest was accepted at enrolment and
            # must not end a running programme now (e.g. a contact limit changed since).
            violations = check_maintenance(subscription, enrolment.customer.id,
                                           enrolment.customer.maintenance_subscription_id,
                                           enrolment.period_start, enrolment.period_end)
        else:
            # The CLI prechecks with the same country list, so it never accepts what this refuses.
            violations = check_enrolment(enrolment, subscription, request.policy,
                                         known_countries=supported_countries(), registry_contacts=registry_contacts)
        return EnrolmentCheckResult(violations=violations, subscription=subscription,
                                    registry_contacts=registry_contacts)

    @activity.defn
    async def register_programme(self, request: RegisterProgramme) -> WorkspaceRef:
        """Customer, contacts, projection (with E2 acceptance and the start's audit entry) and the D10 workspace,
        in one transaction."""
        status, enrolment = request.status, request.enrolment
        customer = enrolment.customer
        async with self._session_factory() as session, session.begin():
            await upsert_customer(session, customer.id, customer.name, customer.maintenance_subscription_id)
            # D10: contacts of an earlier period left out of this enrolment lose access now, as the save that
            # followed did before `enrolment-mails-at-once` (a workspace readable after a close kept them active).
            await sync_contacts(session, customer.id, _merge_contacts(enrolment.contacts(), status.contacts))
            # reopen: a customer enrolled again after a closed programme gets its workspace back.
            workspace = await create_workspace(session, customer.id, workspace_id_for(customer.id), reopen=True)
            # The projection names the workspace it was registered with: the workflow sets the same id from
            # this result, and since `enrolment-mails-at-once` no save follows before the mails.
            status.workspace_id = workspace.id
            await upsert_programme(session, status, enrolment)
            await replace_open_steps(session, status.workflow_id, programme_open_steps(status))
            await append_audit_entries(session, status.workflow_id, request.audit)
        maybe_crash(REGISTRATION_AFTER_COMMIT)  # crash tests: committed, the first workflow task never completes
        return WorkspaceRef(workspace_id=workspace.id)

    @activity.defn
    async def save_projection(self, update: ProjectionUpdate) -> Ack:
        status = update.status
        active = status.phase not in _NO_ACCESS_PHASES
        async with self._session_factory() as session, session.begin():
            await ensure_customer(session, status.customer_id, status.customer_name)
            await upsert_programme(session, status)
            # Issue 16: the inbox's rows change in the same transaction as the state they come from.
            await replace_open_steps(session, status.workflow_id, programme_open_steps(status))
            if status.phase not in _ACCESS_DECIDED_BY_CLOSE:
                await sync_contacts(session, status.customer_id, status.contacts, active=active)
            added = await append_audit_entries(session, status.workflow_id, update.audit)
        maybe_crash(PROJECTION_AFTER_COMMIT)  # crash tests: committed, the workflow does not know yet
        return Ack(detail=f"projection saved, {audit_note(added)}")

    @activity.defn
    async def save_cycle_projection(self, update: CycleProjection) -> Ack:
        """Issue 16: a monthly cycle's open steps, for the inbox; the cycle's other state stays in the workflow."""
        status = update.status
        steps = cycle_open_steps(status)
        async with self._session_factory() as session, session.begin():
            await replace_open_steps(session, status.workflow_id, steps)
        return Ack(detail=f"{len(steps)} open step(s) of {status.workflow_id}")

    @activity.defn
    async def record_billable_extra(self, record: ExtraRecord) -> Ack:
        """Rule C3: the extra is priced as it is stored, from OT's price list in force on the UTC day it was
        recorded (quantity × unit price), or by its override (with its reason); with neither it is stored
        unpriced, never refused: a missing price must not stop the workflow. A retry finds the first row."""
        extra = record.extra

        async def write(session: AsyncSession) -> Inserted[BillableExtraRow]:
            entry = await price_effective_on(session, extra.kind, as_utc(extra.recorded_at).date())
            return await insert_billable_extra(session, customer_id=record.customer_id, period=record.period,
                                               extra=extra, idempotency_key=record.idempotency_key,
                                               price=price_extra(extra.quantity, entry, extra.amount,
                                                                  extra.months))

        return await record_once(self._session_factory, write, lambda row: f"extra {row.id} ({priced_as(row)})")

    @activity.defn
    async def close_workspace(self, request: CloseWorkspace) -> Ack:
        """D10 ends with the period: archive the workspace; its contacts read it (nothing more) for
        `readable_days`, then their access ends (portal/auth.py: contact_access). 0 days: revoked at once."""
        closed_at = at_or_now(request.closed_at)
        async with self._session_factory() as session, session.begin():
            workspace = await archive_workspace(session, request.customer_id, now=closed_at,
                                                readable_for=timedelta(days=request.readable_days))
            # No workspace to read: nothing to keep the contacts' access for.
            at_once = request.readable_days == 0 or workspace is None
            revoked = await deactivate_contacts(session, request.customer_id) if at_once else 0
        if workspace is None:
            return Ack(detail=f"no workspace for {request.customer_id}; {revoked} contact(s) revoked")
        if at_once:
            return Ack(detail=f"workspace {workspace.id} archived; {revoked} contact(s) revoked")
        ends = as_utc(workspace.access_ends_at or closed_at)
        return Ack(detail=f"workspace {workspace.id} archived; readable by its contacts until {ends.isoformat()}")
