"""A migrated database with two orgs, for outbox and delivery tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from farm.accounts import create_org
from farm.db import Database
from farm.settings import WebhookSettings
from farm.webhooks.registry import create_webhook

FAST = WebhookSettings(allow_private=True, retry_base_s=0.2, max_attempts=3, timeout_s=5, poll_s=0.05, concurrency=2)


@dataclass
class Orgs:
    db: Database
    a: str
    b: str

    def webhook(self, url: str, org: str | None = None, event_types: list[str] | None = None) -> tuple[str, str]:
        """(id, secret) of a new webhook."""
        with self.db.session() as s:
            hook = create_webhook(s, org or self.a, url, event_types or [], FAST)
            s.commit()
            return hook.id, hook.secret


@pytest.fixture
def orgs(database_url: str) -> Iterator[Orgs]:
    db = Database(database_url)
    db.upgrade()
    with db.session() as s:
        a, b = create_org(s, "org-a").id, create_org(s, "org-b").id
        s.commit()
    yield Orgs(db, a, b)
    db.dispose()
