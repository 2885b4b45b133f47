"""Usage records: written off the request path in batches, summed per org, project, key and model."""

from __future__ import annotations

from datetime import timedelta

import pytest

from farm.accounts import create_org
from farm.db import Database
from farm.db.models import UsageRecord, utcnow
from farm.usage import Usage, UsageRecorder, summarize


def test_recorded_usage_adds_up_per_group(database_url: str) -> None:
    db = Database(database_url)
    db.upgrade()
    with db.session() as s:
        a, b = create_org(s, "a").id, create_org(s, "b").id
        s.commit()
    recorder = UsageRecorder(db, idle_s=0.05)
    recorder.start()
    now = utcnow()
    for i in range(250):  # more than one batch
        recorder.record(Usage(a, f"key_{i % 2}", "proj_1" if i < 100 else None, "chat.completions", "m1",
                              prompt_tokens=10, completion_tokens=i % 5, replica_seconds=0.5, created_at=now))
    recorder.record(Usage(a, "key_0", None, "images.generations", "sd", images=3, replica_seconds=1.25, created_at=now))
    recorder.record(Usage(a, "key_0", None, "images.generations", "sd", images=1, created_at=now - timedelta(days=2)))
    recorder.record(Usage(b, "key_b", None, "completions", "m1", prompt_tokens=7, created_at=now))
    assert recorder.flush()

    with db.session() as s:
        assert s.query(UsageRecord).count() == 253
        totals, groups = summarize(s, a, now - timedelta(hours=1), now + timedelta(seconds=1), group_by=["model", "key"])
        assert (totals.requests, totals.prompt_tokens, totals.images) == (251, 2500, 3)
        assert totals.completion_tokens == sum(i % 5 for i in range(250))
        assert totals.replica_seconds == pytest.approx(250 * 0.5 + 1.25)
        by = {(g["model"], g["key"]): t for g, t in groups}
        assert set(by) == {("m1", "key_0"), ("m1", "key_1"), ("sd", "key_0")}
        assert by[("m1", "key_0")].requests == 125 and by[("sd", "key_0")].images == 3
        project_only, _ = summarize(s, a, now - timedelta(hours=1), now + timedelta(seconds=1), project_id="proj_1")
        assert project_only.requests == 100
        whole_range, _ = summarize(s, a, now - timedelta(days=3), now + timedelta(seconds=1), key_id="key_0")
        assert (whole_range.requests, whole_range.images) == (127, 4)
        empty, none = summarize(s, a, now + timedelta(hours=1), now + timedelta(hours=2), group_by=["project"])
        assert (empty.requests, empty.replica_seconds, none) == (0, 0.0, [])
    recorder.stop()
    db.dispose()


def test_stop_writes_what_is_queued(tmp_path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'farm.db'}")
    db.upgrade()
    with db.session() as s:
        org = create_org(s, "a").id
        s.commit()
    recorder = UsageRecorder(db, idle_s=60)  # would wait a minute to fill a batch
    recorder.start()
    recorder.record(Usage(org, None, None, "completions", "m", prompt_tokens=1))
    recorder.stop()
    with db.session() as s:
        assert s.query(UsageRecord).count() == 1
    db.dispose()
