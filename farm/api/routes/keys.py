"""/v1/keys: an admin issues, lists and revokes the org's API keys."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from farm import audit
from farm.accounts import Principal, issue_key, revoke_key
from farm.api.deps import Admin, SessionDep, well_formed
from farm.api.errors import ERROR_RESPONSES, not_found
from farm.api.pagination import Cursor, Limit, paginate
from farm.api.schemas import KeyCreate, KeyCreated, KeyPublic, Page
from farm.db.models import ApiKey

router = APIRouter(prefix="/v1/keys", tags=["keys"], responses=ERROR_RESPONSES)


def _load(session: Session, principal: Principal, key_id: str) -> ApiKey:
    key = session.get(ApiKey, key_id) if well_formed(key_id) else None
    if key is None or key.org_id != principal.org_id:
        raise not_found("API key")
    return key


@router.post("", status_code=201, response_model=KeyCreated)
def create_key(body: KeyCreate, principal: Admin, session: SessionDep) -> KeyCreated:
    key, plaintext = issue_key(session, principal.org_id, body.name, body.role)
    audit.record(session, principal, "key.create", "api_key", key.id, name=body.name, role=body.role.value)
    session.commit()
    return KeyCreated(**KeyPublic.model_validate(key).model_dump(), key=plaintext)


@router.get("", response_model=Page[KeyPublic])
def list_keys(principal: Admin, session: SessionDep, limit: Limit = 50, cursor: Cursor = None) -> Page[KeyPublic]:
    stmt = select(ApiKey).where(ApiKey.org_id == principal.org_id)
    return paginate(session, stmt, ApiKey.id, KeyPublic, limit, cursor)


@router.get("/{key_id}", response_model=KeyPublic)
def get_key(key_id: str, principal: Admin, session: SessionDep) -> ApiKey:
    return _load(session, principal, key_id)


@router.delete("/{key_id}", response_model=KeyPublic)
def revoke(key_id: str, principal: Admin, session: SessionDep, request: Request) -> ApiKey:
    """Revoked keys stay listed (with revoked_at) for the audit trail."""
    key = _load(session, principal, key_id)
    revoke_key(session, key)
    audit.record(session, principal, "key.revoke", "api_key", key.id, name=key.name)
    session.commit()
    generation = getattr(request.app.state, "generation", None)
    if generation is not None:  # the generation routes' verified keys: this one goes at once
        generation.keys.forget(key.id)
    return key
