"""A lease row: whoever holds it (and keeps renewing it) is the one dispatcher.

One conditional UPDATE takes or renews the lease atomically, on PostgreSQL
and SQLite alike; a holder that stops renewing loses it after the TTL.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from farm.db.models import Lease, utcnow


def acquire(session: Session, name: str, holder: str, ttl_s: float) -> bool:
    now = utcnow()
    expires = now + timedelta(seconds=ttl_s)
    result = session.execute(
        update(Lease)
        .where(Lease.name == name, or_(Lease.holder == holder, Lease.expires_at < now))
        .values(holder=holder, expires_at=expires)
    )
    if result.rowcount == 1:  # type: ignore[attr-defined]
        session.commit()
        return True
    session.rollback()
    if session.get(Lease, name) is not None:
        return False
    session.add(Lease(name=name, holder=holder, expires_at=expires))
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        return False
    return True


def release(session: Session, name: str, holder: str) -> None:
    session.execute(update(Lease).where(Lease.name == name, Lease.holder == holder).values(expires_at=utcnow()))
    session.commit()
