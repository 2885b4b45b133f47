"""Which job starts next (priority, then fair share) and who holds the dispatcher lease."""

from __future__ import annotations

from datetime import timedelta

from farm.accounts import Principal, create_org
from farm.db import Database, Project, Role
from farm.db.models import Job, utcnow
from farm.dispatch import lease
from farm.dispatch.selection import next_jobs
from farm.ids import new_id
from farm.jobs.service import submit


def _setup(url: str) -> tuple[Database, dict[str, tuple[Principal, Project]]]:
    db = Database(url)
    db.upgrade()
    out = {}
    with db.session() as s:
        for name in ("a", "b", "c"):
            org = create_org(s, name)
            project = Project(id=new_id("proj"), org_id=org.id, name="p")
            s.add(project)
            out[name] = (Principal(key_id="key_x", org_id=org.id, role=Role.admin), project)
        s.commit()
    return db, out


def _submit(db: Database, who: tuple[Principal, Project], priority: int = 50) -> str:
    with db.session() as s:
        job, _ = submit(s, who[0], s.merge(who[1]), "debug.sleep", {"items": 0}, priority, None, 3)
        return job.id


def test_priority_beats_fair_share(database_url: str) -> None:
    db, orgs = _setup(database_url)
    low = [_submit(db, orgs["a"], 10) for _ in range(3)]
    high = _submit(db, orgs["b"], 90)
    with db.session() as s:
        assert next_jobs(s, 2) == [high, low[0]]


def test_flooding_org_cannot_starve_others(database_url: str) -> None:
    db, orgs = _setup(database_url)
    flood = [_submit(db, orgs["a"]) for _ in range(50)]
    lone_b, lone_c = _submit(db, orgs["b"]), _submit(db, orgs["c"])
    with db.session() as s:
        picked = next_jobs(s, 3)
    assert set(picked) == {flood[0], lone_b, lone_c}
    # with a job of org a already running, the others go first
    with db.session() as s:
        s.get(Job, flood[0]).state = "running"
        s.commit()
        assert next_jobs(s, 2) == [lone_b, lone_c]


def test_recently_served_org_waits_its_turn(database_url: str) -> None:
    db, orgs = _setup(database_url)
    a1, a2 = _submit(db, orgs["a"]), _submit(db, orgs["a"])
    b1 = _submit(db, orgs["b"])
    with db.session() as s:
        job = s.get(Job, a1)
        job.state, job.started_at = "succeeded", utcnow()
        s.commit()
        assert next_jobs(s, 1) == [b1]
    assert a2


def test_lease_is_exclusive_until_it_expires(database_url: str) -> None:
    db = Database(database_url)
    db.upgrade()
    with db.session() as s:
        assert lease.acquire(s, "dispatcher", "one", ttl_s=30)
        assert lease.acquire(s, "dispatcher", "one", ttl_s=30)  # renew
        assert not lease.acquire(s, "dispatcher", "two", ttl_s=30)
        lease.release(s, "dispatcher", "one")
        assert lease.acquire(s, "dispatcher", "two", ttl_s=0.001)
        from farm.db import Lease

        s.get(Lease, "dispatcher").expires_at = utcnow() - timedelta(seconds=1)
        s.commit()
        assert lease.acquire(s, "dispatcher", "one", ttl_s=30)
