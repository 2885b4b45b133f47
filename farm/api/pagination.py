"""Cursor pagination over time-ordered ids, newest first."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from farm.api.deps import ID_PATTERN
from farm.api.schemas import Page

P = TypeVar("P", bound=BaseModel)

Limit = Annotated[int, Query(ge=1, le=200, description="Page size")]
Cursor = Annotated[str | None, Query(max_length=64, pattern=ID_PATTERN, description="next_cursor of the previous page")]
# OpenAI-style lists (files, batches) page with the id of the last object seen instead.
AfterId = Annotated[str | None, Query(max_length=64, pattern=ID_PATTERN, description="last_id of the previous page")]


def paginate(
    session: Session, stmt: Select[Any], id_col: InstrumentedAttribute[str], public: type[P], limit: int, cursor: str | None
) -> Page[P]:
    return paginate_map(session, stmt, id_col, public.model_validate, limit, cursor)


def paginate_map(
    session: Session, stmt: Select[Any], id_col: InstrumentedAttribute[str], to_public: Any, limit: int, cursor: str | None
) -> Page[Any]:
    """Like paginate, for public models built by a function rather than from attributes."""
    if cursor:
        stmt = stmt.where(id_col < cursor)
    rows = list(session.scalars(stmt.order_by(id_col.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page[Any](data=[to_public(r) for r in rows], next_cursor=rows[-1].id if more else None)
