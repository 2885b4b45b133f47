"""The batch kinds' hook: a batch's job transitions also reach webhooks as `batch.<status>` (no Ray needed)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from farm.accounts import Principal
from farm.batches import files, service
from farm.db.models import Asset, File, Job, Project, Role, WebhookDelivery
from farm.ids import new_id
from farm.jobs.service import request_cancel, submit, transition
from farm.jobs.states import JobState
from farm.settings import BatchSettings
from tests.farm.webhooks.conftest import Orgs, orgs  # noqa: F401  (the fixture: a database with two orgs)


def test_batch_jobs_publish_batch_events_and_other_kinds_do_not(orgs: Orgs) -> None:
    orgs.webhook("https://a.example.com/all")
    me = Principal(key_id="key_test", org_id=orgs.a, role=Role.admin)
    with orgs.db.session() as s:
        project = Project(id=new_id("proj"), org_id=orgs.a, name="p")
        s.add(project)
        s.flush()
        asset = Asset(id=new_id("asset"), org_id=orgs.a, project_id=project.id, name="in.jsonl", kind="other",
                      content_type="application/jsonl", size=2, sha256="0" * 64, object_key="k")
        s.add(asset)
        s.flush()
        input_file = files.attach(s, me, asset, "in.jsonl", "batch")
        s.commit()

    def step(change: Callable[[Session], None]) -> list[str]:
        """The event types one committed change queued."""
        with orgs.db.session() as s:
            before = set(s.scalars(select(WebhookDelivery.id)))
            change(s)
            s.commit()
            return sorted(d.event_type for d in s.scalars(select(WebhookDelivery)) if d.id not in before)

    made: dict[str, str] = {}

    def create(s: Session) -> None:
        _, job = service.create(s, me, s.get_one(File, input_file.id), s.get_one(Project, project.id),
                                "/v1/chat/completions", "24h", None, 3, BatchSettings())
        made["job"] = job.id

    def to(state: JobState) -> Callable[[Session], None]:
        return lambda s: transition(s, s.get_one(Job, made["job"]), state)

    assert step(create) == ["batch.validating", "job.queued"]
    assert step(to(JobState.running)) == ["job.running"]  # the runner publishes its own phases while running
    assert step(lambda s: request_cancel(s, me, s.get_one(Job, made["job"]))) == ["batch.cancelling", "job.cancel_requested"]
    assert step(to(JobState.cancelled)) == ["batch.cancelled", "job.cancelled"]
    assert step(to(JobState.queued)) == ["batch.validating", "job.queued"]

    def sleep_job(s: Session) -> None:
        job, _ = submit(s, me, s.get_one(Project, project.id), "debug.sleep", {}, 50, None, 3, commit=False)
        made["sleep"] = job.id

    assert step(sleep_job) == ["job.queued"]
    assert step(lambda s: transition(s, s.get_one(Job, made["sleep"]), JobState.cancelled)) == ["job.cancelled"]
