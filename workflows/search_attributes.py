"""Upserting search attributes only when their value changes (issue 16).

Every upsert is a billable Action on Temporal Cloud and an event in the history, and most steps change
no search attribute: `_publish` runs after each of them. Workflow code (called from inside a workflow):
`workflow.patched` records, in a run started after the change, that it compares; a run started before
replays with every upsert it made.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate


def upsert_changed(updates: Sequence[SearchAttributeUpdate[Any]], patch_id: str) -> None:
    """Upsert `updates`, leaving out those that change nothing once `patch_id` is patched in.

    Compared with the values as this run knows them: the start's and its own upserts (in its history), so
    the comparison replays the same."""
    if workflow.patched(patch_id):
        current = workflow.info().typed_search_attributes
        updates = [u for u in updates if current.get(u.key) != u.value]
    if updates:
        workflow.upsert_search_attributes(updates)
