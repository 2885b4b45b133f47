"""Batches past their completion window end `expired`: finished results kept, the rest in the error file as expired.

The first test drives `farm.batches.expiry` on the database and a local
object store (both backends, no Ray): a batch whose first attempt left
results behind and was requeued expires while queued, and a second pass (a
restarted control plane) changes nothing. The second runs a real batch on
Ray and vLLM (the session's warm Serve deployment, ``batch_engine: serve``),
expired mid-run through the window setting while a second batch with the
same custom_ids waits behind it; the same run checks each answer's
finish_reason as vLLM reports it and that response ids are unique across the
batches.
"""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from farm.accounts import Principal
from farm.batches import expiry, files, service
from farm.batches.status import batch_status
from farm.db.models import Asset, Batch, File, Job, JobItem, Project, Role, WebhookDelivery, utcnow
from farm.ids import new_id
from farm.jobs.service import add_event, record_items, transition
from farm.jobs.states import JobState
from farm.openai.batch_lines import EXPIRED_MESSAGE, output_line
from farm.settings import BatchSettings
from farm.storage import LocalStore
from farm.webhooks.signing import verify
from tests.farm.batches.conftest import TERMINAL, BatchFarm
from tests.farm.batches.test_batch_chat import assert_stopped, chat, stop_probe
from tests.farm.webhooks.conftest import Orgs, orgs  # noqa: F401  (the fixture: a database with two orgs)
from tests.farm.webhooks.receiver import Receiver

TOTAL = 400  # requests of the running batch: far more than finish while the window is being enforced
PROBE_EVERY = 50
EXPIRED = {"code": "batch_expired", "message": "This request could not be executed before the completion window expired."}


def _recorded(bf: BatchFarm, job_id: str) -> set[int]:
    """Line numbers of the requests with a recorded outcome."""
    with bf.jf.farm.db.session() as s:
        return set(s.scalars(select(JobItem.idx).where(JobItem.job_id == job_id)))


def _put(store: LocalStore, key: str, lines: list[str]) -> None:
    data = ("\n".join(lines) + "\n").encode()
    store.put(key, io.BytesIO(data), length=len(data))


def _file_lines(s: Any, store: LocalStore, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    asset = s.get_one(Asset, s.get_one(File, file_id).asset_id)
    text = b"".join(store.get(asset.object_key)).decode()
    return [json.loads(x) for x in text.splitlines() if x.strip()]


def test_a_requeued_batch_expires_in_the_queue_keeping_what_its_first_attempt_finished(orgs: Orgs, tmp_path: Path) -> None:  # noqa: F811
    orgs.webhook("https://a.example.com/all", event_types=["batch.*"])
    store = LocalStore(tmp_path / "objects", b"k" * 16, "http://127.0.0.1")
    store.ensure_ready()
    me = Principal(key_id="key_test", org_id=orgs.a, role=Role.admin)
    requests = [json.dumps(chat(i)) for i in range(4)] + ['{"custom_id": "broken", ']  # line 5 cannot run
    with orgs.db.session() as s:
        project = Project(id=new_id("proj"), org_id=orgs.a, name="p")
        s.add(project)
        s.flush()
        key = f"orgs/{orgs.a}/projects/{project.id}/in.jsonl"
        _put(store, key, requests)
        asset = Asset(id=new_id("asset"), org_id=orgs.a, project_id=project.id, name="in.jsonl", kind="other",
                      content_type="application/jsonl", size=1, sha256="0" * 64, object_key=key)
        s.add(asset)
        s.flush()
        input_file = files.attach(s, me, asset, "in.jsonl", "batch")
        batch, job = service.create(s, me, input_file, project, "/v1/chat/completions", "24h", None, 3,
                                    BatchSettings(completion_window_s=3600))
        assert batch.expires_at - job.created_at == timedelta(hours=1)  # the window lasts what the setting says
        # The first attempt validated (total 5), answered req-0 (recorded) and req-1 (its part written, the
        # runner killed before recording it), then died; the job waits in the queue for its second attempt.
        job.total = 5
        transition(s, job, JobState.running)
        body = {"id": "chatcmpl-x", "object": "chat.completion", "choices": []}
        for n, cid in enumerate(("req-0", "req-1")):
            _put(store, part := f"orgs/{orgs.a}/batches/{batch.id}/parts/output-a01-{n:05d}.jsonl", [output_line(cid, body)])
            add_event(s, job.id, "part", key=part, kind="output", lines=1)
        record_items(s, job, [(1, True, None)], 1)
        transition(s, job, JobState.queued, reason="runner vanished")
        s.commit()
        batch_id, job_id = batch.id, job.id

    with orgs.db.session() as s:
        assert expiry.expire_due(s, 3600) == []  # within the window: nothing happens
        assert expiry.expire_due(s, 3600, now=utcnow() + timedelta(hours=2)) == [batch_id]
        s.commit()
        b, j = s.get_one(Batch, batch_id), s.get_one(Job, job_id)
        assert j.state == "cancelled" and batch_status(b, j) == "finalizing" and b.expired_at is not None
        assert expiry.stopped(s) == [batch_id]

    with orgs.db.session() as s:
        assert expiry.finalize_expired(s, store, batch_id, 1 << 20)
    for _ in range(2):  # a restarted control plane runs both steps again: nothing changes
        expiry.enforce(orgs.db.session, lambda: store, 0.001, 1 << 20)

    with orgs.db.session() as s:
        b, j = s.get_one(Batch, batch_id), s.get_one(Job, job_id)
        assert batch_status(b, j) == "expired" and b.expired_at is not None
        assert [o["custom_id"] for o in _file_lines(s, store, b.output_file_id)] == ["req-0", "req-1"]
        errors = _file_lines(s, store, b.error_file_id)
        assert [e["custom_id"] for e in errors] == ["req-2", "req-3"]
        assert all(e["response"] is None and e["error"] == EXPIRED and e["id"].startswith("batch_req_") for e in errors)
        assert (j.total, j.succeeded, j.failed) == (5, 2, 3)  # req-1 counted once, from its part; the broken line expired too
        items = {i.idx: (i.ok, i.error) for i in s.scalars(select(JobItem).where(JobItem.job_id == job_id))}
        assert items == {1: (True, None), 2: (True, None), 3: (False, EXPIRED_MESSAGE), 4: (False, EXPIRED_MESSAGE),
                         5: (False, EXPIRED_MESSAGE)}
        events = sorted(d.event_type for d in s.scalars(select(WebhookDelivery)))
        # validating at submit and again at the requeue; nothing while it stopped (no batch.cancelled)
        assert events == ["batch.expired", "batch.validating", "batch.validating"], events
        expired = next(d for d in s.scalars(select(WebhookDelivery)) if d.event_type == "batch.expired")
        assert expired.payload["data"]["status"] == "expired"
        assert expired.payload["data"]["request_counts"] == {"total": 5, "completed": 2, "failed": 3}


def _request(i: int) -> dict[str, Any]:
    """Every 50th request ends on a stop string, the next is cut by max_tokens; the rest just generate."""
    if i % PROBE_EVERY == 0:
        return stop_probe(i)
    if i % PROBE_EVERY == 1:
        return {**chat(i, content="tell me about shot 1", max_tokens=4), "custom_id": f"cut-{i}"}
    return chat(i, max_tokens=32)


def test_window_expires_a_running_batch_and_one_queued_behind_it(serve_batch_farm: BatchFarm) -> None:
    batch_farm = serve_batch_farm
    settings = batch_farm.jf.settings
    settings.dispatch.max_running = 1  # the second batch waits behind the first
    settings.dispatch.cancel_grace_s = 1  # then Ray stops the runner (SIGTERM) if it has not stopped between parts
    requests = [_request(i) for i in range(TOTAL)]
    probes = {i + 1 for i in range(TOTAL) if i % PROBE_EVERY < 2}  # their line numbers
    receiver = Receiver()
    with receiver:
        hook = batch_farm.jf.clients["a"].post("/v1/webhooks", json={"url": receiver.url(), "event_types": ["batch.expired"]}).json()
        running = batch_farm.submit(requests)
        waiting = batch_farm.submit(requests[:21])  # the same custom_ids
        # results stream back in 128-request blocks, in no set order: wait until a stop and a cut probe finished
        batch_farm.wait(running.id, lambda b: b.status in TERMINAL or {(n - 1) % PROBE_EVERY for n in _recorded(batch_farm, b.job_id) & probes} == {0, 1})
        settings.batch.completion_window_s = 1  # both batches are past it now
        done = batch_farm.wait(running.id, timeout=300)
        queued = batch_farm.wait(waiting.id, timeout=30)
        assert (done.status, queued.status) == ("expired", "expired"), (done.request_counts, queued.request_counts)
        deliveries = receiver.wait_for(2)

    assert done.expired_at is not None and done.expires_at <= done.expired_at, done
    out, errors = batch_farm.lines(done.output_file_id), batch_farm.lines(done.error_file_id)
    counts = done.request_counts
    assert counts.total == TOTAL and counts.completed == len(out) and counts.failed == len(errors) == TOTAL - len(out)
    assert 2 <= len(out) < TOTAL and all(e["response"] is None and e["error"] == EXPIRED for e in errors)
    assert sorted([o["custom_id"] for o in out] + [e["custom_id"] for e in errors]) == sorted(r["custom_id"] for r in requests)
    answers = {o["custom_id"]: o["response"]["body"] for o in out}
    stopped = [b for cid, b in answers.items() if cid.startswith("stop-")]
    cut = [b for cid, b in answers.items() if cid.startswith("cut-")]
    assert stopped and cut, sorted(answers)
    for body in stopped:
        assert_stopped(body)
    for body in cut:
        assert body["choices"][0]["finish_reason"] == "length" and body["usage"]["completion_tokens"] == 4, body

    assert queued.expired_at is not None and (queued.request_counts.total, queued.request_counts.failed) == (21, 21)
    assert batch_farm.lines(queued.output_file_id) == []
    queued_errors = batch_farm.lines(queued.error_file_id)
    assert [e["custom_id"] for e in queued_errors] == [r["custom_id"] for r in requests[:21]]
    line_ids = [x["id"] for x in out + errors + queued_errors]
    body_ids = [o["response"]["body"]["id"] for o in out]
    assert len(set(line_ids)) == len(line_ids) and len(set(body_ids)) == len(body_ids)

    assert sorted(d.json()["data"]["id"] for d in deliveries) == sorted([running.id, waiting.id])
    for d in deliveries:
        assert verify(hook["secret"], d.headers["x-farm-signature"], d.body) and d.json()["data"]["status"] == "expired"
    assert batch_farm.jf.job(done.job_id)["state"] == "cancelled"
