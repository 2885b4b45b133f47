"""Files: OpenAI's handle on a stored asset, tagged with a purpose."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from farm import audit
from farm.accounts import Principal
from farm.db.models import Asset, File
from farm.ids import new_id

PURPOSES = ("batch", "batch_output", "batch_error", "user_data")


def attach(session: Session, principal: Principal, asset: Asset, filename: str, purpose: str) -> File:
    """A file over an asset that is already stored (uploaded, or written by a job)."""
    f = File(
        id=new_id("file"), org_id=asset.org_id, project_id=asset.project_id, asset_id=asset.id,
        filename=filename, purpose=purpose, bytes=asset.size,
    )
    session.add(f)
    audit.record(session, principal, "file.create", "file", f.id, org_id=asset.org_id, purpose=purpose)
    return f


def delete(session: Session, principal: Principal, f: File) -> str | None:
    """Drop the file; returns the asset id when no other file still uses it (the caller deletes it)."""
    session.delete(f)
    audit.record(session, principal, "file.delete", "file", f.id)
    session.flush()
    still_used = session.scalars(select(File.id).where(File.asset_id == f.asset_id).limit(1)).first()
    return None if still_used else f.asset_id
