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

from sqlalchemy import Row, Select, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from storage.tables import Base

RowT = TypeVar("RowT", bound=Base)
# Any statement, any row (SQLAlchemy 2.1 types a Select and a Row by each of their columns).
AnySelect = Select[*tuple[Any, ...]]
AnyRow = Row[*tuple[Any, ...]]
StmtT = TypeVar("StmtT", bound=AnySelect)


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


# Built once per statement shape and dialect: `excluded` copies every column of the table, and a new statement
# misses SQLAlchemy's compiled cache (issue 16's profile of a programme start: a quarter of an enrolment's
# database time was building and compiling the same upserts again).
_UPSERTS: dict[tuple[str, str, tuple[str, ...], tuple[str, ...], tuple[str, ...], str | None], Any] = {}


def _upsert_statement(session: AsyncSession, model: type[Base], conflict_on: Sequence[str],
                      update_columns: Sequence[str], coalesce_columns: Sequence[str], newer_by: str | None) -> Any:
    key = (session.get_bind().dialect.name, model.__tablename__, tuple(conflict_on), tuple(update_columns),
           tuple(coalesce_columns), newer_by)
    stmt = _UPSERTS.get(key)
    if stmt is None:
        table = Base.metadata.tables[model.__tablename__]
        ins = conflict_insert(session, model, "upsert")
        set_: dict[str, Any] = {}
        for col in update_columns:
            new = ins.excluded[col]
            set_[col] = func.coalesce(new, table.c[col]) if col in coalesce_columns else new
        where = ins.excluded[newer_by] >= table.c[newer_by] if newer_by is not None else None
        stmt = _UPSERTS[key] = ins.on_conflict_do_update(index_elements=list(conflict_on), set_=set_, where=where)
    return stmt


async def upsert(
    session: AsyncSession,
    model: type[Base],
    values: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    conflict_on: Sequence[str],
    update_columns: Sequence[str],
    coalesce_columns: Sequence[str] = (),
    newer_by: str | None = None,
) -> None:
    """Insert, or update `update_columns` of the existing row (one statement, race-safe); a list of rows (the same
    columns in each) is one statement executed for each.

    `coalesce_columns` keep their stored value when the new one is NULL. With `newer_by`, a
    write whose value in that column is older than the stored one changes nothing.
    """
    rows_ = [dict(values)] if isinstance(values, Mapping) else [dict(v) for v in values]
    if rows_:
        stmt = _upsert_statement(session, model, conflict_on, update_columns, coalesce_columns, newer_by)
        await session.execute(stmt, rows_)


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
    session: AsyncSession, stmt: Select[RowT], *filters: tuple[InstrumentedAttribute[Any], Any],
) -> list[RowT]:
    """The rows `stmt` selects, narrowed by the optional `filters` (see `where_given`)."""
    return list((await session.execute(where_given(stmt, *filters))).scalars())
