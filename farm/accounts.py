"""Organizations and API keys: issuing, authenticating, revoking.

Keys are ``sk_farm_<prefix><secret>``. Only the prefix (for lookup) and a
SHA-256 of the whole key are stored; keys carry 256 bits of randomness, so a
slow password hash would add latency without adding safety.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from farm.db.models import ApiKey, Organization, Role, utcnow
from farm.ids import new_id

KEY_SCHEME = "sk_farm_"
PREFIX_LEN = 12
LAST_USED_RESOLUTION = timedelta(seconds=60)


@dataclass(frozen=True)
class Principal:
    """Who is calling: resolved from the bearer key on every request."""

    key_id: str
    org_id: str
    role: Role

    def can(self, role: Role) -> bool:
        return self.role.rank >= role.rank


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_org(session: Session, name: str) -> Organization:
    org = Organization(id=new_id("org"), name=name)
    session.add(org)
    session.flush()
    return org


def issue_key(session: Session, org_id: str, name: str, role: Role) -> tuple[ApiKey, str]:
    """Create a key; the plaintext is returned here once and never stored."""
    body = secrets.token_urlsafe(32).replace("-", "x").replace("_", "y")
    plaintext = f"{KEY_SCHEME}{body}"
    key = ApiKey(
        id=new_id("key"),
        org_id=org_id,
        name=name,
        prefix=body[:PREFIX_LEN],
        key_hash=_hash(plaintext),
        role=role,
    )
    session.add(key)
    session.flush()
    return key, plaintext


def authenticate(session: Session, presented: str, now: datetime | None = None) -> Principal | None:
    if not presented.startswith(KEY_SCHEME) or len(presented) < len(KEY_SCHEME) + PREFIX_LEN:
        return None
    prefix = presented[len(KEY_SCHEME) : len(KEY_SCHEME) + PREFIX_LEN]
    key = session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).one_or_none()
    if key is None or key.revoked_at is not None:
        return None
    if not hmac.compare_digest(key.key_hash, _hash(presented)):
        return None
    now = now or utcnow()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        key.last_used_at = now
        session.commit()
    return Principal(key_id=key.id, org_id=key.org_id, role=Role(key.role))


def revoke_key(session: Session, key: ApiKey) -> None:
    if key.revoked_at is None:
        key.revoked_at = utcnow()
