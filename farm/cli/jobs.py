"""`farm jobs`: submit, list, watch (live progress from the SSE stream), cancel, retry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from farm.cli.client import CliError, Client, from_settings
from farm.cli.output import console, err, table
from farm.settings import get_settings

jobs_app = typer.Typer(help="Render jobs: submit, list, watch, cancel, retry.", no_args_is_help=True)
TERMINAL = {"succeeded", "failed", "cancelled"}


def _client() -> Client:
    return from_settings(get_settings())


def parse_sets(pairs: list[str]) -> dict[str, Any]:
    """--set a=1 --set b.c=x → {"a": 1, "b": {"c": "x"}}; values parse as JSON when they can."""
    spec: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise typer.BadParameter(f"--set wants key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        node = spec
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return spec


@jobs_app.command("submit")
def submit(
    kind: str,
    project: Annotated[str, typer.Option("--project", "-p", help="Project id")],
    spec_file: Annotated[Path | None, typer.Option("--spec", help="JSON file with the spec")] = None,
    sets: Annotated[list[str] | None, typer.Option("--set", help="Spec field, key=value (repeatable)")] = None,
    priority: Annotated[int, typer.Option(min=0, max=100)] = 50,
    idempotency_key: Annotated[str | None, typer.Option(help="Resubmitting with the same key returns the same job")] = None,
    watch_: Annotated[bool, typer.Option("--watch", help="Follow progress until the job ends")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    spec = json.loads(spec_file.read_text()) if spec_file else {}
    spec.update(parse_sets(sets or []))
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    client = _client()
    job = client.request("POST", "/v1/jobs", json={"kind": kind, "spec": spec, "priority": priority, "project_id": project}, headers=headers)
    if as_json:
        console.print_json(json.dumps(job))
    else:
        console.print(f"Job [bold]{job['id']}[/] {job['kind']} {job['state']} (priority {job['priority']})")
    if watch_:
        follow(client, job["id"])


@jobs_app.command("list")
def list_jobs(
    state: Annotated[str | None, typer.Option()] = None,
    kind: Annotated[str | None, typer.Option()] = None,
    project: Annotated[str | None, typer.Option("--project", "-p")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    params = {k: v for k, v in {"state": state, "kind": kind, "project_id": project}.items() if v}
    rows = list(_client().pages("/v1/jobs", **params))
    if as_json:
        console.print_json(json.dumps(rows))
        return
    for r in rows:
        c = r["counts"]
        r["items"] = f"{c['succeeded']}+{c['failed']} failed/{c['total']}"
    table(rows, ["id", "kind", "state", "priority", "items", "attempts", "created_at"], title="Jobs")


@jobs_app.command("get")
def get(job_id: str) -> None:
    console.print_json(json.dumps(_client().request("GET", f"/v1/jobs/{job_id}")))


@jobs_app.command("watch")
def watch(job_id: str) -> None:
    """Live progress bar until the job ends; exits 1 unless it succeeded."""
    follow(_client(), job_id)


#: Progress fields a kind reports inside an item, as (done, total, label); the first present is shown.
WORK_FIELDS = (("frames_rendered", "frames_total", "frames rendered"), ("frames_decoded", "frames_total", "frames decoded"),
               ("shots_rendered", "shots_total", "shots rendered"))


def progress_detail(ev: dict[str, Any], counts: dict[str, Any]) -> str:
    """What a progress event says beyond items: the phase and the work done inside long items, and failures."""
    parts = [str(ev["phase"])] if ev.get("phase") else []
    for done, total, label in WORK_FIELDS:
        if done in ev and ev.get(total):
            parts.append(f"{label} {ev[done]:,}/{ev[total]:,}")
            break
    if counts.get("failed"):
        parts.append(f"{counts['failed']} failed")
    return " · ".join(parts)


def follow(client: Client, job_id: str) -> None:
    final: dict[str, Any] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[detail]}"), TimeElapsedColumn())
    with Progress(*columns, console=err) as progress:
        task = progress.add_task(job_id, total=None, detail="")
        try:
            with client.http.stream("GET", f"/v1/jobs/{job_id}/events", timeout=httpx.Timeout(30, read=None)) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    client._result(resp)
                for line in resp.iter_lines():
                    if not line.startswith("data: "):
                        continue
                    ev = json.loads(line[6:])
                    counts = ev.get("counts") or ev
                    if "total" in counts:
                        done = counts.get("succeeded", 0) + counts.get("failed", 0)
                        progress.update(task, total=counts["total"] or None, completed=done, detail=progress_detail(ev, counts))
                    if ev["type"] == "state":
                        progress.update(task, description=f"{job_id} {ev['state']}")
                        if ev["state"] in TERMINAL:
                            final = ev
        except httpx.TransportError as exc:
            raise CliError(f"lost the event stream: {exc}") from None
    job = client.request("GET", f"/v1/jobs/{job_id}")
    c = job["counts"]
    console.print(f"Job {job_id} [bold]{job['state']}[/]: {c['succeeded']} succeeded, {c['failed']} failed of {c['total']}"
                  + (f" — {job['error']}" if job["error"] else ""))
    for asset_id in job["result_asset_ids"][:50]:
        console.print(f"  result {asset_id}  {client.url}/v1/assets/{asset_id}/content")
    if (final.get("state") or job["state"]) != "succeeded":
        raise typer.Exit(1)


@jobs_app.command("cancel")
def cancel(job_id: str) -> None:
    job = _client().request("POST", f"/v1/jobs/{job_id}/cancel")
    console.print(f"Job {job_id}: {job['state']}")


@jobs_app.command("retry")
def retry(job_id: str, all_items: Annotated[bool, typer.Option("--all", help="Rerun every item, not only failed ones")] = False) -> None:
    job = _client().request("POST", f"/v1/jobs/{job_id}/retry", json={"scope": "all" if all_items else "failed"})
    console.print(f"Job {job_id}: {job['state']}")


@jobs_app.command("kinds")
def kinds() -> None:
    rows = _client().request("GET", "/v1/job-kinds")
    for r in rows:
        r["outputs"] = "\n".join(f"{o['name']}: {o['type']}{' (many)' if o['per_item'] == 'many' else ''}" for o in r["outputs"])
    table(rows, ["kind", "description", "outputs"], title="Job kinds")
