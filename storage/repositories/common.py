"""What every repository module shares: the result types and the dialect helpers.

Idempotent inserts use `INSERT ... ON CONFLICT DO NOTHING` and then read the row by
its key. Unlike catching IntegrityError, that never aborts the caller's PostgreSQL
transaction, and two concurrent writers with the same key end with one row: the
second waits for the first to commit, inserts nothing and reads the winner's row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from storage.tables import Base

RowT = TypeVar("RowT", bound=Base)
StmtT = TypeVar("StmtT", bound=Select[Any])


@dataclass(frozen=True)
class Inserted(Generic[RowT]):
    """The row stored under an idempotency key, and whether this call created it."""

    row: RowT
    created: bool


@dataclass(frozen=True)
class UpsertCounts:
    inserted: int = 0
    updated: int = 0


# ---- dialect helpers ----------------------------------------------------------------


def _native_insert(session: AsyncSession, model: type[Base]) -> postgresql.Insert | sqlite.Insert | None:
    """An INSERT that knows ON CONFLICT, on the dialects that have one; None elsewhere."""
    table = Base.metadata.tables[model.__tablename__]
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    return None


def conflict_insert(session: AsyncSession, model: type[Base], what: str) -> postgresql.Insert | sqlite.Insert:
    """`_native_insert`, for writes that have no fallback on other dialects (`what` names them in the error)."""
    ins = _native_insert(session, model)
    if ins is None:
        raise NotImplementedError(f"{what} is not implemented for {session.get_bind().dialect.name}")
    return ins


async def insert_ignore(
    session: AsyncSession, model: type[Base], values: Mapping[str, Any], conflict_on: Sequence[str]
) -> bool:
    """Insert unless a row with the same `conflict_on` values exists; True when inserted."""
    ins = _native_insert(session, model)
    if ins is not None:
        result = await session.execute(ins.values(**values).on_conflict_do_nothing(index_elements=list(conflict_on)))
        return bool(getattr(result, "rowcount", 0))
    # Other dialects: a savepoint keeps the caller's transaction usable after the conflict.
    try:
        async with session.begin_nested():
            await session.execute(Base.metadata.tables[model.__tablename__].insert().values(**values))
    except IntegrityError:
        return False
    return True


async def upsert(
    session: AsyncSession,
    model: type[Base],
    values: Mapping[str, Any],
    conflict_on: Sequence[str],
    update_columns: Sequence[str],
    coalesce_columns: Sequence[str] = (),
    newer_by: str | None = None,
) -> None:
    """Insert, or update `update_columns` of the existing row (one statement, race-safe).

    `coalesce_columns` keep their stored value when the new one is NULL. With `newer_by`, a
    write whose value in that column is older than the stored one changes nothing.
    """
    table = Base.metadata.tables[model.__tablename__]
    stmt = conflict_insert(session, model, "upsert").values(**values)
    set_: dict[str, Any] = {}
    for col in update_columns:
        new = stmt.excluded[col]
        set_[col] = func.coalesce(new, table.c[col]) if col in coalesce_columns else new
    where = stmt.excluded[newer_by] >= table.c[newer_by] if newer_by is not None else None
    await session.execute(stmt.on_conflict_do_update(index_elements=list(conflict_on), set_=set_, where=where))


def fresh(stmt: StmtT) -> StmtT:
    # Core upserts bypass the identity map: reload instead of returning stale objects.
    return stmt.execution_options(populate_existing=True)


def where_given(stmt: StmtT, *filters: tuple[InstrumentedAttribute[Any], Any]) -> StmtT:
    """`stmt` narrowed by `column == value` for each filter whose value is not None (the optional list filters)."""
    for column, value in filters:
        if value is not None:
            stmt = stmt.where(column == value)
    return stmt


async def one_by(session: AsyncSession, model: type[RowT], column: InstrumentedAttribute[Any], value: Any) -> RowT:
    return (await session.execute(fresh(select(model).where(column == value)))).scalar_one()


async def rows(
    session: AsyncSession, stmt: Select[tuple[RowT]], *filters: tuple[InstrumentedAttribute[Any], Any],
) -> list[RowT]:
    """The rows `stmt` selects, narrowed by the optional `filters` (see `where_given`)."""
    return list((await session.execute(where_given(stmt, *filters))).scalars())
