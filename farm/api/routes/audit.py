"""/v1/audit-events: who changed what, for admins."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from farm.api.deps import Admin, SessionDep
from farm.api.errors import ERROR_RESPONSES
from farm.api.pagination import Cursor, Limit, paginate
from farm.api.schemas import AuditEventPublic, Page
from farm.db.models import AuditEvent

router = APIRouter(prefix="/v1/audit-events", tags=["audit"], responses=ERROR_RESPONSES)


@router.get("", response_model=Page[AuditEventPublic])
def list_events(
    principal: Admin,
    session: SessionDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    action: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z_.]+$")] = None,
) -> Page[AuditEventPublic]:
    stmt = select(AuditEvent).where(AuditEvent.org_id == principal.org_id)
    if action:
        stmt = stmt.where(AuditEvent.action == action)
    return paginate(session, stmt, AuditEvent.id, AuditEventPublic, limit, cursor)
