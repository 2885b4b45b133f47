"""Alembic migrations build the schema the models describe, on both databases."""

from __future__ import annotations

from sqlalchemy import inspect

from farm.db import Base, Database
from alembic.script import ScriptDirectory

from farm.db.migrate import alembic_config, current


def test_upgrade_matches_models_and_is_idempotent(database_url: str) -> None:
    db = Database(database_url)
    assert current(db.engine) is None
    db.upgrade()
    db.upgrade()  # a second start is a no-op
    assert current(db.engine) == ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    insp = inspect(db.engine)
    tables = set(insp.get_table_names()) - {"alembic_version"}
    assert tables == set(Base.metadata.tables)
    for name, table in Base.metadata.tables.items():
        assert {c["name"] for c in insp.get_columns(name)} == {c.name for c in table.columns}, name
    db.dispose()


def test_models_and_migrations_do_not_drift(database_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    db = Database(database_url)
    db.upgrade()
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models changed without a migration: {diff}"
    db.dispose()
