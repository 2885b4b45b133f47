"""`farm demo`: the main job on embedded defaults, end to end, then a clean stop.

Starts the farm, uploads a generated multi-shot sample, runs `video.shots` on
it, then `video.restyle` on the shots it found (the tiny random-weight
diffusion model unless a registry file names real weights), each with a live
progress bar (a re-run reuses the jobs that already ran on the sample);
downloads the outputs, puts the restyled sample beside the source in one
video, and says where everything is.
"""

from __future__ import annotations

import json
import shutil
import subprocess
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
RESTYLE = {  # small on purpose: seconds on two CPU cores with the demo model
    "prompt": "a watercolor painting, soft paper texture", "short_side": 128, "steps": 4, "strength": 0.6,
    "consistency": "anchor", "chunk_size": 16,
}
SHOTS_BARS = (("frames_decoded", "frames_total", "decoding frames"), ("shots_rendered", "shots_total", "rendering shots"))
RESTYLE_BARS = (("frames_rendered", "frames_total", "restyling frames"),)


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
        done = run_job(client, project["id"], asset["id"], "video.shots", {}, SHOTS_BARS,
                       "shots, keyframes, clips and a contact sheet", "already split this sample")
        out = settings.home / "demo-output"
        shutil.rmtree(out, ignore_errors=True)
        files = download_results(client, done["result_asset_ids"], out)
        shots = json.loads((out / f"{sample.path.stem}.shots.json").read_text())
        starts = [s["start_frame"] for s in shots["shots"][1:]]
        console.print(f"{len(shots['shots'])} shots found, cuts at {starts} (the sample's cuts: {list(sample.cuts)})")
        table([{"shot": s["index"], "frames": f"{s['start_frame']}-{s['end_frame'] - 1}", "start": s["start_timecode"],
                "clip": s.get("clip", {}).get("name", ""), "keyframe": s.get("keyframe_images", [{}])[0].get("name", "")}
               for s in shots["shots"]], ["shot", "frames", "start", "clip", "keyframe"], title="video.shots")

        model = demo_model_note(settings)
        shot_list = next(o["asset_id"] for o in done["outputs"] if o["type"] == "video_shots")
        styled = run_job(client, project["id"], asset["id"], "video.restyle", RESTYLE, RESTYLE_BARS,
                         f"every frame through {model}, on the shots found above, sound kept",
                         "already rendered this sample with these settings", extra={"shots_asset_ids": [shot_list]})
        files += download_results(client, styled["result_asset_ids"], out)
        report = json.loads((out / f"{sample.path.stem}.restyle.json").read_text())
        restyled = out / f"{sample.path.stem}.restyled.mp4"
        beside = side_by_side(sample.path, restyled, out / f"{sample.path.stem}.side-by-side.mp4")
        console.print(f"{report['output']['frames']} of {report['video']['frames']} frames restyled at "
                      f"{'x'.join(map(str, report['working_size']))}, audio {'kept' if report['output']['has_audio'] else 'none'}; "
                      f"flicker {report['flicker']} (output change / source change within shots)")

        clips = sorted(p.name for p in files if p.suffix == ".mp4" and ".shot-" in p.name)
        console.print(Panel.fit(
            f"project        {project['id']}\nsource asset   {farm.url}/v1/assets/{asset['id']}\n"
            f"jobs           {done['id']} video.shots ({len(done['result_asset_ids'])} result assets)\n"
            f"               {styled['id']} video.restyle ({len(styled['result_asset_ids'])} result assets)\n"
            f"contact sheet  {out / (sample.path.stem + '.contact.jpg')}\n"
            f"shot list      {out / (sample.path.stem + '.shots.json')}  (.shots.csv, .edl beside it)\n"
            f"clips          {out}/{clips[0] if clips else '-'} … ({len(clips)} clips, keyframes as .jpg)\n"
            f"restyled       {restyled}  (before | after keyframes: .restyle.jpg)\n"
            f"side by side   {beside}  (source | restyled, the source's sound)\n"
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


def follow(client: Client, job_id: str, bars: tuple[tuple[str, str, str], ...]) -> dict[str, Any]:
    """One progress bar per (done, total, label) field pair of the job's events; returns the finished job."""
    columns = (TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err) as progress:
        tasks = [progress.add_task(label, total=None, visible=n == 0) for n, (_, _, label) in enumerate(bars)]
        with client.http.stream("GET", f"/v1/jobs/{job_id}/events", timeout=httpx.Timeout(30, read=None)) as resp:
            for line in resp.iter_lines():
                if not line.startswith("data: "):
                    continue
                ev = json.loads(line[6:])
                for task, (done, total, _) in zip(tasks, bars):
                    if total in ev and done in ev:
                        progress.update(task, total=ev[total], completed=ev[done], visible=True)
                if ev["type"] == "state" and ev["state"] in ("succeeded", "failed", "cancelled"):
                    break
    job: dict[str, Any] = client.request("GET", f"/v1/jobs/{job_id}")
    c = job["counts"]
    console.print(f"Job {job_id} [bold]{job['state']}[/]: {c['succeeded']} of {c['total']} videos done, {c['failed']} failed")
    return job


def run_job(client: Client, project_id: str, asset_id: str, kind: str, settings: dict[str, Any],
            bars: tuple[tuple[str, str, str], ...], what: str, reused: str, *, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """``kind`` on the sample with ``settings``, or the earlier such job (re-runs reuse it); the finished job, which succeeded."""
    job = earlier(client, project_id, kind, asset_id, settings)
    if job is None:
        spec = {"asset_ids": [asset_id], **(extra or {}), **settings}
        job = client.request("POST", "/v1/jobs", json={"kind": kind, "project_id": project_id, "spec": spec})
        console.print(f"Job [bold]{job['id']}[/] {kind} submitted: {what}")
        done = follow(client, job["id"], bars)
    else:
        console.print(f"Job [bold]{job['id']}[/] {kind} {reused}; reusing it")
        done = client.request("GET", f"/v1/jobs/{job['id']}")
    if done["state"] != "succeeded" or done["counts"]["failed"]:
        raise SystemExit(f"{kind} job {job['id']} ended {done['state']}: {done['error'] or done['counts']}")
    return done


def earlier(client: Client, project_id: str, kind: str, asset_id: str, settings: dict[str, Any]) -> dict[str, Any] | None:
    """A succeeded ``kind`` job of the demo on this sample with these settings: re-runs reuse it instead of running again."""
    for job in client.pages("/v1/jobs", kind=kind, state="succeeded", project_id=project_id):
        spec = job["spec"]
        if spec.get("asset_ids") == [asset_id] and all(spec.get(k) == v for k, v in settings.items()):
            return job
    return None


def demo_model_note(settings: Settings) -> str:
    """Which diffusion model the restyle uses, in words; builds the demo models when no registry file is set."""
    if settings.models.registry_file is not None:
        return f"the first diffusion model of {settings.models.registry_file}"
    from serve.demo_models import build_demo_models

    with console.status("building the tiny demo models (once)"):
        build_demo_models(settings.models.cache_dir)
    return "the tiny random-weight demo model (noise-like looks; FARM_MODELS__REGISTRY_FILE names real weights)"


def side_by_side(source: Path, restyled: Path, out: Path) -> Path:
    """The source and its restyled copy next to each other in one H.264 MP4, with the source's sound (ffmpeg)."""
    graph = "[1:v][0:v]scale2ref=oh*mdar:ih[r][l];[l][r]hstack=inputs=2,format=yuv420p[v]"
    cmd = ["ffmpeg", "-v", "error", "-y", "-i", str(source), "-i", str(restyled), "-filter_complex", graph,
           "-map", "[v]", "-map", "0:a?", "-c:v", "libx264", "-crf", "20", "-preset", "veryfast", "-c:a", "copy", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"ffmpeg could not put the videos side by side: {done.stderr.strip()[-500:]}")
    return out


def download_results(client: Client, asset_ids: list[str], out: Path) -> list[Path]:
    """The job's outputs as files in ``out``, named as their assets are."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for asset_id in asset_ids:
        meta = client.request("GET", f"/v1/assets/{asset_id}")
        path = out / Path(meta["name"]).name
        with path.open("wb") as fh:
            client.download(asset_id, fh)
        paths.append(path)
    return paths

