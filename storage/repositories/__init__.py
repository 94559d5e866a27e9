"""Async repository functions over an `AsyncSession` (activities, CLI, portal), one module per aggregate.

Functions never commit: the caller owns the transaction
(`async with session_factory() as s, s.begin(): ...`), so an activity's writes land
together or not at all.

New code imports from the aggregate's module (`storage.repositories.requests`, ...); this
package re-exports the public names so `from storage import repositories as repo` and
`repo.<name>` serve the faces that read several aggregates at once.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from storage.repositories.audit import append_audit, list_audit
    from storage.repositories.clock import as_utc, utcnow
    from storage.repositories.common import Inserted, UpsertCounts
    from storage.repositories.customers import (
        deactivate_contacts,
        ensure_customer,
        get_customer,
        get_subscription,
        list_contacts,
        list_subscriptions,
        subscription_model,
        sync_contacts,
        upsert_contacts,
        upsert_customer,
        upsert_subscriptions,
    )
    from storage.repositories.documents import get_document, insert_document, list_documents
    from storage.repositories.extras import (
        insert_billable_extra,
        list_billable_extras,
        list_billable_extras_between,
        list_billable_extras_by_month,
    )
    from storage.repositories.outbox import get_outbox, list_outbox
    from storage.repositories.prices import import_prices, list_price_rows, list_prices, price_effective_on
    from storage.repositories.programmes import (
        ClosedWorkspace,
        archive_workspace,
        closed_workspace,
        create_workspace,
        get_programme,
        get_workspace,
        list_programmes,
        upsert_programme,
        workspace_id_for,
    )
    from storage.repositories.requests import (
        allocate_tracking_number,
        append_message,
        append_sla_event,
        append_status_change,
        get_dispatch,
        get_request,
        list_dispatches,
        list_messages,
        list_requests,
        list_sla_events,
        list_status_changes,
        upsert_dispatch,
        upsert_request,
    )

# name -> the aggregate's module. The package imports a module when one of its names is first asked for: a
# command reading one aggregate (`step list`, issue 16) does not load the others (PEP 562).
_MODULE_OF: dict[str, str] = {
    "ClosedWorkspace": "programmes",
    "Inserted": "common",
    "UpsertCounts": "common",
    "allocate_tracking_number": "requests",
    "append_audit": "audit",
    "append_message": "requests",
    "append_sla_event": "requests",
    "append_status_change": "requests",
    "archive_workspace": "programmes",
    "as_utc": "clock",
    "closed_workspace": "programmes",
    "create_workspace": "programmes",
    "deactivate_contacts": "customers",
    "ensure_customer": "customers",
    "get_customer": "customers",
    "get_dispatch": "requests",
    "get_document": "documents",
    "get_outbox": "outbox",
    "get_programme": "programmes",
    "get_request": "requests",
    "get_subscription": "customers",
    "get_workspace": "programmes",
    "import_prices": "prices",
    "insert_billable_extra": "extras",
    "insert_document": "documents",
    "list_audit": "audit",
    "list_billable_extras": "extras",
    "list_billable_extras_between": "extras",
    "list_billable_extras_by_month": "extras",
    "list_contacts": "customers",
    "list_dispatches": "requests",
    "list_documents": "documents",
    "list_messages": "requests",
    "list_outbox": "outbox",
    "list_price_rows": "prices",
    "list_prices": "prices",
    "list_programmes": "programmes",
    "list_requests": "requests",
    "list_sla_events": "requests",
    "list_status_changes": "requests",
    "list_subscriptions": "customers",
    "price_effective_on": "prices",
    "subscription_model": "customers",
    "sync_contacts": "customers",
    "upsert_contacts": "customers",
    "upsert_customer": "customers",
    "upsert_dispatch": "requests",
    "upsert_programme": "programmes",
    "upsert_request": "requests",
    "upsert_subscriptions": "customers",
    "utcnow": "clock",
    "workspace_id_for": "programmes",
}


if not TYPE_CHECKING:  # for mypy, the names are the imports above: a misspelt one stays an error
    def __getattr__(name: str) -> Any:
        module = _MODULE_OF.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        globals()[name] = value
        return value

__all__ = [
    "ClosedWorkspace",
    "Inserted",
    "UpsertCounts",
    "allocate_tracking_number",
    "append_audit",
    "append_message",
    "append_sla_event",
    "append_status_change",
    "archive_workspace",
    "as_utc",
    "closed_workspace",
    "create_workspace",
    "deactivate_contacts",
    "ensure_customer",
    "get_customer",
    "get_dispatch",
    "get_document",
    "get_outbox",
    "get_programme",
    "get_request",
    "get_subscription",
    "get_workspace",
    "import_prices",
    "insert_billable_extra",
    "insert_document",
    "list_audit",
    "list_billable_extras",
    "list_billable_extras_between",
    "list_billable_extras_by_month",
    "list_contacts",
    "list_dispatches",
    "list_documents",
    "list_messages",
    "list_outbox",
    "list_price_rows",
    "list_prices",
    "list_programmes",
    "list_requests",
    "list_sla_events",
    "list_status_changes",
    "list_subscriptions",
    "price_effective_on",
    "subscription_model",
    "sync_contacts",
    "upsert_contacts",
    "upsert_customer",
    "upsert_dispatch",
    "upsert_programme",
    "upsert_request",
    "upsert_subscriptions",
    "utcnow",
    "workspace_id_for",
]
