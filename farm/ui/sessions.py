"""Dashboard sessions: an API key exchanged for a random cookie id, kept server-side.

The cookie carries 256 random bits; the table keeps only their SHA-256, so a
copy of the database signs nobody in. A session is only as good as its key:
it reads ``revoked_at`` on every request and dies with the key.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from farm.accounts import Principal, authenticate
from farm.db.models import ApiKey, Role, UiSession, utcnow

COOKIE = "farm_session"


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def sign_in(session: Session, api_key: str, ttl: timedelta, now: datetime | None = None) -> tuple[str, UiSession] | None:
    """A new session for a valid key: (cookie value, row); None for a wrong or revoked key."""
    principal = authenticate(session, api_key.strip())
    if principal is None:
        return None
    now = now or utcnow()
    session.execute(delete(UiSession).where(UiSession.expires_at < now))  # housekeeping, cheap with the index
    cookie = secrets.token_urlsafe(32)
    row = UiSession(id_hash=_hash(cookie), key_id=principal.key_id, org_id=principal.org_id, role=principal.role,
                    csrf_token=secrets.token_urlsafe(32), created_at=now, expires_at=now + ttl)
    session.add(row)
    session.commit()
    return cookie, row


def resolve(session: Session, cookie: str | None, now: datetime | None = None) -> tuple[Principal, UiSession] | None:
    """The signed-in principal of a cookie, or None: unknown, expired, or its key revoked."""
    if not cookie or len(cookie) > 100:
        return None
    found = session.execute(
        select(UiSession, ApiKey.revoked_at).join(ApiKey, ApiKey.id == UiSession.key_id).where(UiSession.id_hash == _hash(cookie))
    ).one_or_none()
    if found is None:
        return None
    row, revoked_at = found
    if revoked_at is not None or row.expires_at <= (now or utcnow()):
        return None
    return Principal(key_id=row.key_id, org_id=row.org_id, role=Role(row.role)), row


def sign_out(session: Session, cookie: str | None) -> None:
    if cookie:
        session.execute(delete(UiSession).where(UiSession.id_hash == _hash(cookie)))
        session.commit()


def csrf_ok(row: UiSession, presented: str | None) -> bool:
    return bool(presented) and secrets.compare_digest(row.csrf_token, presented or "")
