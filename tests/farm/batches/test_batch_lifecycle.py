"""Batches survive a killed runner, cancel cleanly, run images, and tell webhooks about it.

The chat batches run on the session's warm Serve deployment (``batch_engine:
serve``): their subject is the farm's bookkeeping, which is the same on both
engines, so they start no engine of their own.
"""

from __future__ import annotations

import os
import signal

from farm.db import Job
from farm.webhooks.signing import verify
from tests.farm.batches.conftest import TERMINAL, BatchFarm
from tests.farm.batches.test_batch_chat import chat

RESUMED = 300  # requests of the killed batch
ANSWER_TOKENS = 48
from tests.farm.webhooks.receiver import Receiver


def _runner_pid(bf: BatchFarm, job_id: str) -> int:
    with bf.jf.farm.db.session() as s:
        pid = s.get(Job, job_id).runner_pid
    assert pid
    return pid


def test_killed_runner_resumes_without_missing_or_duplicate_ids(serve_batch_farm: BatchFarm) -> None:
    batch_farm = serve_batch_farm
    # The kill is triggered by a count of finished requests, never by time; what must hold is that
    # plenty is left to generate by then. Results come back in 64-request blocks, so the first count
    # is 64 of 300; the other 236 x 48 tokens are many seconds of the one replica's work, so even a
    # 9 s stall of a busy 2-core box (seen once in the full suite) cannot hide the rest from the poller.
    batch = batch_farm.submit([chat(i, max_tokens=ANSWER_TOKENS) for i in range(RESUMED)])
    running = batch_farm.wait(batch.id, lambda b: b.status in TERMINAL or (b.status == "in_progress" and b.request_counts.completed >= 50))
    # results stream back while the batch runs: some are counted long before the end
    assert running.status == "in_progress", f"no results before the batch ended: {running}"
    os.kill(_runner_pid(batch_farm, running.job_id), signal.SIGKILL)
    done = batch_farm.wait(batch.id)
    assert done.status == "completed", done
    assert batch_farm.jf.job(done.job_id)["attempts"] == 2
    out = batch_farm.lines(done.output_file_id)
    ids = [o["custom_id"] for o in out]
    assert len(ids) == RESUMED and set(ids) == {f"req-{i}" for i in range(RESUMED)}
    assert done.request_counts.completed == RESUMED and done.request_counts.failed == 0
    for line in out:  # the same answers as a job engine gives, vLLM's own finish_reason
        body = line["response"]["body"]
        assert body["object"] == "chat.completion" and body["model"] == "tiny-llama" and body["usage"]["prompt_tokens"] > 0, body
        reason, tokens = body["choices"][0]["finish_reason"], body["usage"]["completion_tokens"]
        assert (reason, tokens) == ("length", ANSWER_TOKENS) or (reason == "stop" and tokens < ANSWER_TOKENS), body


def test_cancel_mid_batch_keeps_finished_results(serve_batch_farm: BatchFarm) -> None:
    batch_farm = serve_batch_farm
    total = 300  # 64-request blocks: the cancel comes after the first, long before the last
    receiver = Receiver()
    with receiver:
        hook = batch_farm.jf.clients["a"].post("/v1/webhooks", json={"url": receiver.url(), "event_types": ["batch.*"]}).json()
        batch = batch_farm.submit([chat(i, max_tokens=64) for i in range(total)])
        batch_farm.wait(batch.id, lambda b: b.request_counts.completed >= 40)
        cancelling = batch_farm.client().batches.cancel(batch.id)
        assert cancelling.status == "cancelling"
        done = batch_farm.wait(batch.id)
        assert done.status == "cancelled" and done.cancelled_at is not None
        out = batch_farm.lines(done.output_file_id)
        assert 40 <= len(out) < total and len({o["custom_id"] for o in out}) == len(out)
        received = receiver.wait_for(4)
        for r in received:
            assert verify(hook["secret"], r.headers["x-farm-signature"], r.body)
            assert r.json()["type"] == f"batch.{r.json()['data']['status']}" and r.json()["data"]["id"] == batch.id
        assert [r.json()["data"]["status"] for r in received] == ["validating", "in_progress", "cancelling", "cancelled"]
        assert received[-1].json()["data"]["output_file_id"] == done.output_file_id


def test_image_batch(batch_farm: BatchFarm) -> None:
    lines = [{"custom_id": f"img-{i}", "method": "POST", "url": "/v1/images/generations",
              "body": {"model": "tiny-sd", "prompt": f"storyboard frame {i}", "size": "64x64", "n": 1, "seed": i, "steps": 2}}
             for i in range(50)]
    lines.append({"custom_id": "too-big", "method": "POST", "url": "/v1/images/generations",
                  "body": {"model": "tiny-sd", "prompt": "x", "size": "4096x4096"}})
    batch = batch_farm.submit(lines, endpoint="/v1/images/generations")
    done = batch_farm.wait(batch.id)
    assert done.status == "completed" and done.request_counts.completed == 50 and done.request_counts.failed == 1, done
    out = batch_farm.lines(done.output_file_id)
    assert sorted(o["custom_id"] for o in out) == sorted(f"img-{i}" for i in range(50))
    item = out[0]["response"]["body"]["data"][0]
    png = batch_farm.jf.clients["a"].get(f"/v1/assets/{item['asset_id']}/content")
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    (err,) = batch_farm.lines(done.error_file_id)
    assert err["custom_id"] == "too-big" and "size" in err["error"]["message"]
