"""Database: typed SQLAlchemy models, engine/session factory, Alembic migrations."""

from farm.db.models import ApiKey, Asset, AuditEvent, Base, Job, JobEvent, JobItem, JobOutput, JobPart, Lease, Organization, Project, Role
from farm.db.session import Database

__all__ = ["ApiKey", "Asset", "AuditEvent", "Base", "Database", "Job", "JobEvent", "JobItem", "JobOutput", "JobPart", "Lease", "Organization", "Project", "Role"]
