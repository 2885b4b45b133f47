"""The farm's jobs on a 3-node Ray cluster (a head that takes no work, two worker nodes), unchanged.

Acceptance 1: a `video.shots` job over 6 videos and a `batch.images` job each
run tasks on both worker nodes, read from the node ids the pipelines record
(per shot in ``shots.json``, per request in the batch output lines).
Acceptance 2: a worker node killed mid-job (raylet and workers, SIGKILL) —
the job still succeeds with every item recorded once and every output once.
The job's driver runs on the head (Ray Jobs' default), which is never the
node killed; Ray's task retries and lineage reconstruction redo what the
dead node held, and the farm's runner is not restarted.

The tests share one cluster and run in file order: the node-loss test is
last because it leaves one worker node.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from openai import OpenAI
from sqlalchemy import select

from cluster.local import job_client
from farm.db import Asset, JobEvent, JobItem, JobOutput
from pipelines.stages.media.synthetic import make_video
from pipelines.stages.worker import node_of
from tests.cluster.conftest import MultiNodeFarm
from tests.farm.dispatch.conftest import JobFarm

SHOTS = (16, 16, 16)  # frames per shot: three hard cuts' worth of tiny video
SHOTS_LONGER = (12, 12, 12, 12)
IMAGES = 12
SPEC = {"chunk_size": 16, "clip_preset": "ultrafast", "keyframes_per_shot": 1}


def upload(jf: JobFarm, path: Path, project: str) -> str:
    with path.open("rb") as fh:
        r = jf.clients["a"].post(f"/v1/projects/{project}/assets", files={"file": (path.name, fh)})
    assert r.status_code in (200, 201), r.text
    return str(r.json()["id"])


def videos(jf: JobFarm, folder: Path, shots: tuple[int, ...], project: str, seed: int) -> list[str]:
    return [upload(jf, make_video(folder / f"reel-{seed}-{i}.mp4", shots, size=(96, 64), fps=24, seed=seed + i).path, project)
            for i in range(6)]


def content(jf: JobFarm, asset_id: str) -> bytes:
    r = jf.clients["a"].get(f"/v1/assets/{asset_id}/content")
    assert r.status_code == 200, r.text
    return r.content


def shot_lists(jf: JobFarm, job: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Each item's ``shots.json``, by item."""
    detail = jf.clients["a"].get(f"/v1/jobs/{job['id']}").json()
    return {o["item"]: json.loads(content(jf, o["asset_id"])) for o in detail["outputs"] if o["output"] == "shots"}


def rendered_on(docs: dict[int, dict[str, Any]]) -> Counter[str]:
    """How many shots each node rendered, by the worker recorded per shot."""
    return Counter(node_of(shot["worker"]) for doc in docs.values() for shot in doc["shots"])


def cached_files(home: Path) -> list[Path]:
    return [p for p in (home / "cache" / "media").glob("*") if p.suffix not in (".lock", ".part")]


def submit_images(jf: JobFarm) -> tuple[OpenAI, str, list[dict[str, Any]]]:
    """A `batch.images` batch of ``IMAGES`` tiny images, through the OpenAI client."""
    key = jf.clients["a"].headers["Authorization"].removeprefix("Bearer ")
    client = OpenAI(base_url=f"{jf.settings.base_url}/v1", api_key=key, max_retries=0, timeout=60)
    lines = [{"custom_id": f"frame-{i}", "method": "POST", "url": "/v1/images/generations",
              "body": {"model": "tiny-sd", "prompt": f"storyboard frame {i}", "size": "64x64", "n": 1, "seed": i, "steps": 1}}
             for i in range(IMAGES)]
    f = client.files.create(file=("frames.jsonl", ("\n".join(map(json.dumps, lines)) + "\n").encode()), purpose="batch")
    batch = client.batches.create(input_file_id=f.id, endpoint="/v1/images/generations", completion_window="24h")
    return client, batch.id, lines


def test_shots_and_images_jobs_spread_over_both_worker_nodes(multinode_farm: MultiNodeFarm, tmp_path: Path) -> None:
    """Both jobs run at once (the farm runs several jobs on one cluster), each asserted on its own."""
    mf, jf = multinode_farm, multinode_farm.jf
    ids = videos(jf, tmp_path, SHOTS, jf.projects["a"], seed=0)
    job = jf.submit(kind="video.shots", spec={"asset_ids": ids, **SPEC})
    client, batch_id, lines = submit_images(jf)
    workers = {"w1": mf.cluster.node_id("w1"), "w2": mf.cluster.node_id("w2")}

    # video.shots: every video's shots, rendered on both worker nodes, none on the head.
    done = jf.wait_done(job["id"], timeout=300)
    assert done["state"] == "succeeded" and done["counts"] == {"total": 6, "succeeded": 6, "failed": 0}, done
    docs = shot_lists(jf, done)
    assert sorted(docs) == list(range(6)) and all(len(d["shots"]) == len(SHOTS) for d in docs.values())
    on = rendered_on(docs)
    assert set(on) == set(workers.values()), f"shots rendered on {dict(on)}; workers are {workers}"

    # The driver ran on the head, started with the interpreter the settings name.
    info = job_client(mf.cluster.head.dashboard_url).get_job_info(done["ray_job_id"])
    assert info.driver_node_id == mf.cluster.head_node_id
    assert info.entrypoint.startswith(f"{mf.runner_python} -m farm.runner ")

    # Workers fetched their inputs from S3 into their own node's cache, none into the control plane's home.
    for name in workers:
        assert cached_files(mf.node_homes[name]), f"node {name} cached no input"
    assert not (jf.settings.home / "cache").exists()

    # batch.images: every request answered once, images rendered on both worker nodes.
    deadline = time.monotonic() + 300
    while (batch := client.batches.retrieve(batch_id)).status not in ("completed", "failed", "cancelled", "expired"):
        assert time.monotonic() < deadline, batch
        time.sleep(0.5)
    assert batch.status == "completed" and batch.request_counts.completed == IMAGES, batch
    assert batch.output_file_id is not None
    out = [json.loads(x) for x in client.files.content(batch.output_file_id).text.splitlines() if x.strip()]
    assert sorted(o["custom_id"] for o in out) == sorted(x["custom_id"] for x in lines)
    images_on = Counter(node_of(o["response"]["body"]["worker"]) for o in out)
    assert set(images_on) == set(workers.values()), f"images rendered on {dict(images_on)}; workers are {workers}"


def test_worker_node_lost_mid_job(multinode_farm: MultiNodeFarm, tmp_path: Path) -> None:
    mf, jf, cluster = multinode_farm, multinode_farm.jf, multinode_farm.cluster
    project = jf.clients["a"].post("/v1/projects", json={"name": "node-loss"}).json()["id"]
    ids = videos(jf, tmp_path, SHOTS_LONGER, project, seed=100)
    lost = cluster.node_id("w2")
    job = jf.submit(kind="video.shots", project_id=project, spec={"asset_ids": ids, **SPEC})

    # Mid-job: the first shots are rendered, most are still to come.
    def rendering(j: dict[str, Any]) -> bool:
        return any(e.get("shots_rendered", 0) >= 1 for e in progress(jf, j["id"])) or j["state"] in ("succeeded", "failed")

    jf.wait(job["id"], rendering, timeout=240)
    events = progress(jf, job["id"])
    total = max(e.get("shots_total", 0) for e in events)
    rendered = max(e.get("shots_rendered", 0) for e in events)
    assert 0 < rendered < total, f"not mid-job when the node went: {rendered} of {total} shots rendered"
    running = jf.job(job["id"])
    info = job_client(cluster.head.dashboard_url).get_job_info(running["ray_job_id"])
    assert info.driver_node_id == cluster.head_node_id != lost  # the node lost is not the driver's
    killed = mf.cluster.nodes_by_name["w2"].kill()
    assert len(killed) > 3  # ray start, raylet, agents and the workers it ran
    cluster.wait_dead(lost)

    done = jf.wait_done(job["id"], timeout=300)
    assert done["state"] == "succeeded" and done["counts"] == {"total": 6, "succeeded": 6, "failed": 0}, done
    assert done["attempts"] == 1  # Ray redid the lost work inside the same run; the runner was not restarted

    with jf.farm.db.session() as s:
        items = s.execute(select(JobItem.idx, JobItem.ok).where(JobItem.job_id == job["id"]).order_by(JobItem.idx)).all()
        outputs = s.execute(select(JobOutput.item, JobOutput.output, JobOutput.asset_id).where(JobOutput.job_id == job["id"])).all()
        assets = s.execute(select(Asset.id, Asset.name, Asset.sha256).where(Asset.project_id == project)).all()
    assert [tuple(i) for i in items] == [(i, True) for i in range(6)]
    # Every output of every item once: a shot rendered again after the loss is not recorded twice.
    per_item = {"shots": 1, "shots_csv": 1, "edl": 1, "contact_sheet": 1, "clips": len(SHOTS_LONGER), "keyframes": len(SHOTS_LONGER)}
    assert Counter((o.item, o.output) for o in outputs) == {(i, k): n for i in range(6) for k, n in per_item.items()}
    assert len(set(outputs)) == len(outputs)
    docs = shot_lists(jf, done)
    assert sorted(docs) == list(range(6)) and all(len(d["shots"]) == len(SHOTS_LONGER) for d in docs.values())
    clip_ids = [shot["clip"]["asset_id"] for d in docs.values() for shot in d["shots"]]
    assert len(set(clip_ids)) == len(clip_ids) == 6 * len(SHOTS_LONGER)

    names = Counter(a.name for a in assets)
    assert max(names.values()) == 1, [n for n, c in names.items() if c > 1]
    expected_clips = {f"reel-100-{i}.shot-{k:03d}.mp4" for i in range(6) for k in range(1, len(SHOTS_LONGER) + 1)}
    assert {n for n in names if n.endswith(".mp4") and ".shot-" in n} == expected_clips
    for a in assets:  # every recorded result is in the object store, byte for byte
        assert hashlib.sha256(content(jf, a.id)).hexdigest() == a.sha256, a.name

    on = rendered_on(docs)
    assert on[cluster.node_id("w1")] > 0 and set(on) <= {cluster.node_id("w1"), lost}, dict(on)


def progress(jf: JobFarm, job_id: str) -> list[dict[str, Any]]:
    with jf.farm.db.session() as s:
        rows = s.scalars(select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.type == "progress").order_by(JobEvent.seq))
        return [e.data for e in rows]
