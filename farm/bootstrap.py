"""First-run setup that needs no API key: create an org and its admin key."""

from __future__ import annotations

from sqlalchemy import func, select

from farm import audit
from farm.accounts import create_org, issue_key
from farm.db import Database, Organization, Role


class OrgExists(Exception):
    pass


def create_org_with_admin(db: Database, name: str, key_name: str = "admin") -> tuple[Organization, str]:
    with db.session() as session:
        if session.scalars(select(Organization).where(Organization.name == name)).first():
            raise OrgExists(f"organization '{name}' already exists")
        org = create_org(session, name)
        key, plaintext = issue_key(session, org.id, key_name, Role.admin)
        audit.record(session, None, "org.create", "organization", org.id, org_id=org.id, name=name, admin_key=key.id)
        session.commit()
        return org, plaintext


def org_count(db: Database) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(Organization)) or 0


def admin_key_for(db: Database, org_name: str, key_name: str) -> tuple[Organization, str]:
    """A fresh admin key for an existing org (or the org itself, if new)."""
    with db.session() as session:
        org = session.scalars(select(Organization).where(Organization.name == org_name)).first()
        if org is None:
            org = create_org(session, org_name)
        key, plaintext = issue_key(session, org.id, key_name, Role.admin)
        audit.record(session, None, "key.create", "api_key", key.id, org_id=org.id, name=key_name, role="admin")
        session.commit()
        return org, plaintext
