"""Engine and sessions for one database URL, PostgreSQL or SQLite."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Engine, create_engine, event, exc, text
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from farm.settings import DatabaseSettings

log = logging.getLogger("farm.db")
T = TypeVar("T")


class DatabaseUnavailable(Exception):
    """The database stayed unreachable for longer than the caller would wait."""


def unreachable(error: BaseException) -> bool:
    """Whether ``error`` means the database could not be reached (worth waiting out), not a bad statement."""
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, (exc.OperationalError, exc.InterfaceError)) and not isinstance(error, exc.TimeoutError)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


class Database:
    """Owns the engine; hands out short-lived sessions."""

    def __init__(self, url: str, *, echo: bool = False, pool: DatabaseSettings | None = None) -> None:
        self.url = url
        kwargs: dict[str, Any] = {"echo": echo, "pool_pre_ping": True}
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 10}
        elif url.startswith("postgresql"):
            kwargs["connect_args"] = {"connect_timeout": 5}  # a host that is gone must not hang a request
            if pool is not None:
                kwargs.update(pool_size=pool.pool_size, max_overflow=pool.max_overflow, pool_timeout=pool.pool_timeout_s)
        self.engine: Engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def of(cls, settings: DatabaseSettings) -> Database:
        """The database of ``settings``, with its pool sized as they say."""
        return cls(settings.url, echo=settings.echo, pool=settings)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions() as s:
            yield s

    def transaction(self, work: Callable[[Session], T], *, wait_s: float) -> T:
        """Run ``work`` in a session of its own; while the database is unreachable, run it again from the start.

        For processes that must ride out a database restart (runners, the
        dispatcher) rather than fail the job: ``work`` commits itself, and a
        transaction that never reached the database is simply retried. After
        ``wait_s`` without the database, `DatabaseUnavailable`.
        """
        deadline = time.monotonic() + wait_s
        delay = 0.2
        while True:
            try:
                with self.sessions() as s:
                    return work(s)
            except exc.DBAPIError as error:
                if not unreachable(error):
                    raise
                if time.monotonic() + delay > deadline:
                    raise DatabaseUnavailable(f"database unreachable for {wait_s:.0f} s: {error.orig}") from error
                log.warning("database unreachable, retrying in %.1f s: %s", delay, error.orig)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def upgrade(self) -> None:
        from farm.db.migrate import upgrade

        upgrade(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()
