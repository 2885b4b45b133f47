"""`farm demo`: the main job on embedded defaults, end to end, then a clean stop.

Starts the farm, uploads a generated multi-shot sample, runs `video.shots` on
it with a live progress bar, downloads the outputs and says where they are.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from farm.bootstrap import admin_key_for
from farm.cli.client import Client
from farm.cli.output import console, err, table
from farm.cli.resources import upload_file
from farm.settings import Settings

if TYPE_CHECKING:
    from pipelines.stages.media.synthetic import SyntheticVideo

DEMO_ORG = "demo"
DEMO_PROJECT = "demo"
SAMPLE_SHOTS = (36, 30, 42, 24)  # frames: hard cuts at 36, 66 and 108


def run_demo(settings: Settings) -> None:
    from farm.embedded import EmbeddedFarm, save_credentials

    started = time.monotonic()
    farm = EmbeddedFarm(settings)
    with console.status("starting the embedded farm (local Ray head + control plane)"):
        farm.start()
    try:
        console.print(f"Farm up at {farm.url} (Ray dashboard {settings.ray.dashboard_url})")
        org, key = admin_key_for(farm.db, DEMO_ORG, f"demo-{int(time.time())}")
        creds = save_credentials(settings.home, farm.url, key)
        console.print(f"Organization [bold]{org.name}[/] {org.id}; admin key saved to {creds} for the CLI")
        client = Client(farm.url, key)
        project = next((p for p in client.pages("/v1/projects") if p["name"] == DEMO_PROJECT), None)
        if project is None:
            project = client.request("POST", "/v1/projects", json={"name": DEMO_PROJECT, "description": "farm demo"})
        sample = sample_video(settings.home / "samples" / "sample-shots.mp4")
        console.print(f"Sample video {sample.path}: {sample.frames} frames at {sample.fps} fps, cuts at {list(sample.cuts)}")
        asset, created = upload_file(client, project["id"], sample.path)
        verb = "uploaded" if created else "already present (deduplicated)"
        console.print(f"Asset {asset['id']} {verb}: {asset['content_type']}, {asset['size']} B, sha256 {asset['sha256']}")
        ready = farm.ready()
        table(
            [{"check": k, "ok": v["ok"], "detail": v.get("detail", "")} for k, v in ready["checks"].items()],
            ["check", "ok", "detail"], title=f"readyz: {ready['status']}",
        )
        if ready["status"] != "ready":
            raise SystemExit("the farm is not ready; see the checks above")
        job = client.request("POST", "/v1/jobs", json={
            "kind": "video.shots", "project_id": project["id"], "spec": {"asset_ids": [asset["id"]]},
        })
        console.print(f"Job [bold]{job['id']}[/] video.shots submitted: shots, keyframes, clips and a contact sheet")
        done = follow_shots(client, job["id"])
        if done["state"] != "succeeded" or done["counts"]["failed"]:
            raise SystemExit(f"video.shots job {job['id']} ended {done['state']}: {done['error'] or done['counts']}")
        out = settings.home / "demo-output"
        files = download_results(client, done["result_asset_ids"], out)
        shots = json.loads((out / f"{sample.path.stem}.shots.json").read_text())
        starts = [s["start_frame"] for s in shots["shots"][1:]]
        console.print(f"{len(shots['shots'])} shots found, cuts at {starts} (the sample's cuts: {list(sample.cuts)})")
        table([{"shot": s["index"], "frames": f"{s['start_frame']}-{s['end_frame'] - 1}", "start": s["start_timecode"],
                "clip": s.get("clip", {}).get("name", ""), "keyframe": s.get("keyframe_images", [{}])[0].get("name", "")}
               for s in shots["shots"]], ["shot", "frames", "start", "clip", "keyframe"], title="video.shots")
        clips = sorted(p.name for p in files if p.suffix == ".mp4")
        console.print(Panel.fit(
            f"project        {project['id']}\nsource asset   {farm.url}/v1/assets/{asset['id']}\n"
            f"job            {job['id']} ({len(done['result_asset_ids'])} result assets)\n"
            f"contact sheet  {out / (sample.path.stem + '.contact.jpg')}\n"
            f"shot list      {out / (sample.path.stem + '.shots.json')}  (.shots.csv, .edl beside it)\n"
            f"clips          {out}/{clips[0] if clips else '-'} … ({len(clips)} clips, keyframes as .jpg)\n"
            f"objects        {settings.storage.local_root}",
            title=f"demo done in {time.monotonic() - started:.1f}s",
        ))
    finally:
        with console.status("stopping"):
            farm.stop()


def sample_video(path: Path) -> SyntheticVideo:
    """The demo's multi-shot sample with a tone track, made once and then reused (so re-runs deduplicate)."""
    from pipelines.stages.media.synthetic import ShotSpec, SyntheticVideo, make_video

    if path.exists():
        return SyntheticVideo(path, 24, (320, 180), tuple(ShotSpec(n) for n in SAMPLE_SHOTS), audio=True)
    return make_video(path, SAMPLE_SHOTS, size=(320, 180), fps=24, audio=True)


def follow_shots(client: Client, job_id: str) -> dict[str, Any]:
    """A progress bar over the job's events: frames decoded, then shots rendered; returns the finished job."""
    columns = (TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err) as progress:
        decode = progress.add_task("decoding frames", total=None)
        render = progress.add_task("rendering shots", total=None, visible=False)
        with client.http.stream("GET", f"/v1/jobs/{job_id}/events", timeout=httpx.Timeout(30, read=None)) as resp:
            for line in resp.iter_lines():
                if not line.startswith("data: "):
                    continue
                ev = json.loads(line[6:])
                if "frames_total" in ev:
                    progress.update(decode, total=ev["frames_total"], completed=ev.get("frames_decoded", 0))
                if "shots_total" in ev:
                    progress.update(render, total=ev["shots_total"], completed=ev.get("shots_rendered", 0), visible=True)
                if ev["type"] == "state" and ev["state"] in ("succeeded", "failed", "cancelled"):
                    break
    job: dict[str, Any] = client.request("GET", f"/v1/jobs/{job_id}")
    c = job["counts"]
    console.print(f"Job {job_id} [bold]{job['state']}[/]: {c['succeeded']} of {c['total']} videos done, {c['failed']} failed")
    return job


def download_results(client: Client, asset_ids: list[str], out: Path) -> list[Path]:
    """The job's outputs as files, named as their assets are."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    paths = []
    for asset_id in asset_ids:
        meta = client.request("GET", f"/v1/assets/{asset_id}")
        path = out / Path(meta["name"]).name
        with path.open("wb") as fh:
            client.download(asset_id, fh)
        paths.append(path)
    return paths

