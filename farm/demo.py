"""`farm demo`: the main job on embedded defaults, end to end, then a clean stop."""

from __future__ import annotations

import time

from rich.panel import Panel

from farm.bootstrap import admin_key_for
from farm.cli.client import Client
from farm.cli.output import console, table
from farm.cli.resources import upload_file
from farm.samples import sample_video
from farm.settings import Settings

DEMO_ORG = "demo"
DEMO_PROJECT = "demo"


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
        console.print(Panel.fit(
            f"project  {project['id']}\nasset    {farm.url}/v1/assets/{asset['id']}\n"
            f"content  {farm.url}/v1/assets/{asset['id']}/content\nobjects  {settings.storage.local_root}",
            title=f"demo done in {time.monotonic() - started:.1f}s",
        ))
    finally:
        with console.status("stopping"):
            farm.stop()
