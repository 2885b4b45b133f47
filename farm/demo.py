"""`farm demo`: the farm's main job — a production, not one step — on embedded defaults, end to end, then a clean stop.

Starts the farm, uploads a generated multi-shot sample and runs the shipped
`footage` workflow template on it (`video.shots` → `video.restyle` on the
shots found → `video.caption` of the restyled video with those same shots),
submitted as `farm workflows run footage` submits it and watched as its tree.
The Idempotency-Key is derived from the sample's content hash, the template
and the parameters, so a second demo gets the finished run back instead of
computing it again. Then every step's outputs are downloaded, the restyled
sample is put beside the source in one video, and each step's job, state and
files are printed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.panel import Panel

from farm.bootstrap import admin_key_for
from farm.cli.client import Client
from farm.cli.output import console, err, table
from farm.cli.resources import upload_file
from farm.cli.workflows import TERMINAL, watch_run
from farm.settings import Settings
from farm.workflows.definition import template

if TYPE_CHECKING:
    from pipelines.stages.media.synthetic import SyntheticVideo

DEMO_ORG = "demo"
DEMO_PROJECT = "demo"
TEMPLATE = "footage"
SAMPLE_SHOTS = (36, 30, 42, 24)  # frames: hard cuts at 36, 66 and 108
PARAMS: dict[str, Any] = {  # small on purpose: the whole production takes seconds per step on two CPU cores with the demo models
    "prompt": "a watercolor painting, soft paper texture", "short_side": 128, "steps": 4, "strength": 0.6, "chunk_size": 16,
    "shot_outputs": ["keyframes", "clips", "contact_sheet", "json", "csv", "edl"], "caption_tokens": 16,
}


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
        console.print(f"Models: {demo_model_note(settings)}")

        view = production(client, project["id"], asset, {"videos": [asset["id"]], **PARAMS})
        out = settings.home / "demo-output"
        shutil.rmtree(out, ignore_errors=True)
        files = {s["id"]: download_outputs(client, s["outputs"], out) for s in view["steps"] if s["state"] == "succeeded"}
        report_steps(view, files)
        if view["state"] != "succeeded":
            raise SystemExit(f"the {TEMPLATE} run {view['id']} ended {view['state']}: {view['error']}")  # the steps above say which

        stem = sample.path.stem
        shots = json.loads((out / f"{stem}.shots.json").read_text())
        starts = [s["start_frame"] for s in shots["shots"][1:]]
        console.print(f"{len(shots['shots'])} shots found, cuts at {starts} (the sample's cuts: {list(sample.cuts)})")
        table([{"shot": s["index"], "frames": f"{s['start_frame']}-{s['end_frame'] - 1}", "start": s["start_timecode"],
                "clip": s.get("clip", {}).get("name", ""), "keyframe": s.get("keyframe_images", [{}])[0].get("name", "")}
               for s in shots["shots"]], ["shot", "frames", "start", "clip", "keyframe"], title="shots (video.shots)")
        report = json.loads((out / f"{stem}.restyle.json").read_text())
        restyled = out / f"{stem}.restyled.mp4"
        beside = side_by_side(sample.path, restyled, out / f"{stem}.side-by-side.mp4")
        console.print(f"{report['output']['frames']} of {report['video']['frames']} frames restyled at "
                      f"{'x'.join(map(str, report['working_size']))}, audio {'kept' if report['output']['has_audio'] else 'none'}; "
                      f"flicker {report['flicker']} (output change / source change within shots)")
        captions = json.loads((out / f"{restyled.stem}.captions.json").read_text())
        console.print(f"{len(captions['shots'])} captions of the restyled video by {captions['model']}, one cue per shot "
                      f"(shots from {captions['shots_from']['source'].replace('_', ' ')} {captions['shots_from'].get('name', '')})")
        table([{"shot": c["index"], "start": f"{c['start_time']:.2f}s", "caption": escape(" ".join(c["caption"].split())[:60])} for c in captions["shots"]],
              ["shot", "start", "caption"], title="captions (video.caption; the tiny random-weight model writes noise)")

        clips = sorted(p.name for p in files["shots"].get("clips", []))
        console.print(Panel.fit(
            f"project        {project['id']}\nsource asset   {farm.url}/v1/assets/{asset['id']}\n"
            f"run            {view['id']} {TEMPLATE}: {' → '.join(s['id'] for s in view['steps'])}\n"
            f"contact sheet  {out / (stem + '.contact.jpg')}\n"
            f"shot list      {out / (stem + '.shots.json')}  (.shots.csv, .edl beside it)\n"
            f"clips          {out}/{clips[0] if clips else '-'} … ({len(clips)} clips, keyframes as .jpg)\n"
            f"restyled       {restyled}  (before | after keyframes: .restyle.jpg)\n"
            f"side by side   {beside}  (source | restyled, the source's sound)\n"
            f"captions       {out / (restyled.stem + '.captions.vtt')}  (.srt, .json beside it)\n"
            f"objects        {settings.storage.local_root}",
            title=f"demo done in {time.monotonic() - started:.1f}s",
        ))
    finally:
        with console.status("stopping"):
            farm.stop()


def run_key(sample_sha256: str, project_id: str, definition: str, params: dict[str, Any]) -> str:
    """The run's Idempotency-Key: the same sample, project, template text and parameters give the same run back."""
    what = json.dumps({"sample": sample_sha256, "project": project_id, "template": definition, "params": params}, sort_keys=True)
    return f"demo-{TEMPLATE}-{hashlib.sha256(what.encode()).hexdigest()[:40]}"


def production(client: Client, project_id: str, asset: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The `footage` run on the sample, as `farm workflows run footage` submits it; a finished one is reused, a failed one retried."""
    definition = template(TEMPLATE)
    key = run_key(str(asset["sha256"]), project_id, definition, params)
    body = {"project_id": project_id, "params": params, "priority": 50, "definition": definition}
    view: dict[str, Any] = client.request("POST", "/v1/workflow-runs", json=body, headers={"Idempotency-Key": key})
    steps = " → ".join(f"{s['id']} ({s['kind']})" for s in view["steps"])
    if view["state"] == "succeeded":
        console.print(f"Run [bold]{view['id']}[/] {TEMPLATE} already ran on this sample with these parameters "
                      f"(Idempotency-Key {key}); reusing the finished run")
        return view
    if view["state"] in TERMINAL:
        again = client.request("POST", f"/v1/workflow-runs/{view['id']}/retry")
        redo = [s["id"] for s in again["steps"] if s["state"] == "pending"]
        console.print(f"Run [bold]{view['id']}[/] {TEMPLATE} ended {view['state']} before; retrying {', '.join(redo)} "
                      "(succeeded steps keep their outputs)")
    elif view["started_at"] is None:
        console.print(f"Run [bold]{view['id']}[/] {TEMPLATE} submitted: {steps}")
    else:
        console.print(f"Run [bold]{view['id']}[/] {TEMPLATE} was started by an earlier demo; following it")
    return watch(client, view["id"])


def watch(client: Client, run_id: str, poll_s: float = 0.5) -> dict[str, Any]:
    """The run as the CLI's live tree (on a terminal), and a line per step as its state changes; returns the ended run."""
    seen: dict[str, str] = {}

    def state_lines(view: dict[str, Any]) -> None:
        for s in view["steps"]:
            if seen.get(s["id"]) != s["state"]:
                seen[s["id"]] = s["state"]
                job = f" {s['job_id']}" if s["job_id"] else ""
                console.print(f"  step {s['id']:<8} {s['kind']:<14} {s['state']}{job}" + (f" — {escape(s['reason'])}" if s["reason"] else ""))

    view = watch_run(client, run_id, poll_s, on_view=state_lines)
    if not err.is_terminal:
        err.line()  # the tree is printed once, at the end, without one
    console.print(f"Run {run_id} [bold]{view['state']}[/]: {view['done']} of {len(view['steps'])} steps ended")
    return view


def report_steps(view: dict[str, Any], files: dict[str, dict[str, list[Path]]]) -> None:
    """Per step: its job, state and item counts, then each output's asset ids and the files they were downloaded to."""
    for s in view["steps"]:
        c = s["counts"] or {"succeeded": 0, "total": 0, "failed": 0}
        console.print(f"Step [bold]{s['id']}[/] {s['kind']} job {s['job_id'] or '-'} {s['state']}: "
                      f"{c['succeeded']} of {c['total']} videos done, {c['failed']} failed" + (f" — {escape(s['reason'])}" if s["reason"] else ""))
        for name, ids in s["outputs"].items():
            paths = files.get(s["id"], {}).get(name, [])
            where = f"{paths[0]}" + (f" … {paths[-1].name} ({len(paths)} files)" if len(paths) > 1 else "") if paths else "-"
            assets = ids[0] + (f" … {ids[-1]}" if len(ids) > 1 else "")
            console.print(f"  {s['id']}.{name:<14} {assets:<36} → {where}")


def download_outputs(client: Client, outputs: dict[str, list[str]], out: Path) -> dict[str, list[Path]]:
    """A step's outputs as files in ``out``, named as their assets are, by output name."""
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, list[Path]] = {}
    for name, asset_ids in outputs.items():
        for asset_id in asset_ids:
            meta = client.request("GET", f"/v1/assets/{asset_id}")
            path = out / Path(meta["name"]).name
            with path.open("wb") as fh:
                client.download(asset_id, fh)
            paths.setdefault(name, []).append(path)
    return paths


def sample_video(path: Path) -> SyntheticVideo:
    """The demo's multi-shot sample with a tone track, made once and then reused (so re-runs deduplicate)."""
    from pipelines.stages.media.synthetic import ShotSpec, SyntheticVideo, make_video

    if path.exists():
        return SyntheticVideo(path, 24, (320, 180), tuple(ShotSpec(n) for n in SAMPLE_SHOTS), audio=True)
    return make_video(path, SAMPLE_SHOTS, size=(320, 180), fps=24, audio=True)


def demo_model_note(settings: Settings) -> str:
    """Which models the production uses, in words; builds the demo models when no registry file is set."""
    if settings.models.registry_file is not None:
        return f"the first diffusion and vision-language models of {settings.models.registry_file}"
    from serve.demo_models import build_demo_models

    with console.status("building the tiny demo models (once)"):
        build_demo_models(settings.models.cache_dir)
    return "the tiny random-weight demo models (noise-like looks and captions; FARM_MODELS__REGISTRY_FILE names real weights)"


def side_by_side(source: Path, restyled: Path, out: Path) -> Path:
    """The source and its restyled copy next to each other in one H.264 MP4, with the source's sound (ffmpeg)."""
    graph = "[1:v][0:v]scale2ref=oh*mdar:ih[r][l];[l][r]hstack=inputs=2,format=yuv420p[v]"
    cmd = ["ffmpeg", "-v", "error", "-y", "-i", str(source), "-i", str(restyled), "-filter_complex", graph,
           "-map", "[v]", "-map", "0:a?", "-c:v", "libx264", "-crf", "20", "-preset", "veryfast", "-c:a", "copy", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"ffmpeg could not put the videos side by side: {done.stderr.strip()[-500:]}")
    return out
