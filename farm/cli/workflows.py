"""`farm workflows`: save definitions, run them (a file, a saved workflow or a shipped template), watch the DAG live, cancel, retry."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from farm.cli.client import CliError, Client, from_settings
from farm.cli.jobs import parse_sets
from farm.cli.output import console, err, table
from farm.settings import get_settings
from farm.workflows.definition import template

workflows_app = typer.Typer(help="Workflows: DAGs of job kinds chained by their outputs.", no_args_is_help=True)
TERMINAL = {"succeeded", "failed", "cancelled"}
STYLE = {"pending": "dim", "running": "cyan", "succeeded": "green", "failed": "red", "skipped": "yellow", "cancelled": "magenta"}


def _client() -> Client:
    return from_settings(get_settings())


@workflows_app.command("create")
def create(file: Path) -> None:
    """Save a definition (YAML or JSON) as a workflow that can be run many times."""
    wf = _client().request("POST", "/v1/workflows", json={"definition": file.read_text()})
    console.print(f"Workflow [bold]{wf['id']}[/] {wf['name']} ({len(wf['definition']['steps'])} steps)")


@workflows_app.command("list")
def list_workflows(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    rows = list(_client().pages("/v1/workflows"))
    if as_json:
        console.print_json(json.dumps(rows))
        return
    for r in rows:
        r["steps"] = " → ".join(s["id"] for s in r["definition"]["steps"])
    table(rows, ["id", "name", "steps", "created_at"], title="Workflows")


@workflows_app.command("run")
def run(
    workflow: Annotated[str, typer.Argument(help="A definition file, a saved workflow's id, or a shipped template (footage, stories)")],
    project: Annotated[str, typer.Option("--project", "-p", help="Project id")],
    sets: Annotated[list[str] | None, typer.Option("--set", help="Parameter, key=value (repeatable; JSON values parse)")] = None,
    priority: Annotated[int, typer.Option(min=0, max=100)] = 50,
    idempotency_key: Annotated[str | None, typer.Option(help="Running again with the same key returns the same run")] = None,
    watch_: Annotated[bool, typer.Option("--watch", help="Follow the run as a live tree until it ends")] = False,
) -> None:
    body: dict[str, Any] = {"project_id": project, "params": parse_sets(sets or []), "priority": priority}
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    client = _client()
    if workflow.startswith("wf_"):
        view = client.request("POST", f"/v1/workflows/{workflow}/runs", json=body, headers=headers)
    else:
        path = Path(workflow)
        try:
            text = path.read_text() if path.is_file() else template(workflow)
        except FileNotFoundError as exc:
            raise CliError(f"{workflow} is no file, saved workflow id or template: {exc}") from None
        view = client.request("POST", "/v1/workflow-runs", json={**body, "definition": text}, headers=headers)
    console.print(f"Run [bold]{view['id']}[/] of {view['workflow']}: {view['state']}")
    if watch_:
        follow(client, view["id"])


@workflows_app.command("watch")
def watch(run_id: str) -> None:
    """The run's DAG as a live tree with each step's progress; exits 1 unless the run succeeded."""
    follow(_client(), run_id)


@workflows_app.command("get")
def get(run_id: str) -> None:
    console.print_json(json.dumps(_client().request("GET", f"/v1/workflow-runs/{run_id}")))


@workflows_app.command("cancel")
def cancel(run_id: str) -> None:
    view = _client().request("POST", f"/v1/workflow-runs/{run_id}/cancel")
    console.print(f"Run {run_id}: {view['state']}")


@workflows_app.command("retry")
def retry(run_id: str) -> None:
    """Re-run the failed and skipped steps; succeeded steps keep their jobs and outputs."""
    view = _client().request("POST", f"/v1/workflow-runs/{run_id}/retry")
    again = [s["id"] for s in view["steps"] if s["state"] == "pending"]
    console.print(f"Run {run_id}: {view['state']}; again: {', '.join(again)}")


trigger_app = typer.Typer(help="Triggers: start a saved workflow on a user's upload or on a cron schedule.", no_args_is_help=True)
workflows_app.add_typer(trigger_app, name="trigger")


@trigger_app.command("add")
def trigger_add(
    workflow_id: Annotated[str, typer.Argument(help="The saved workflow (wf_…) to start")],
    project: Annotated[str, typer.Option("--project", "-p", help="Project id: its uploads fire it, its runs go there")],
    upload: Annotated[str | None, typer.Option(help="Fire on each upload of this content type (video/mp4, video/*)")] = None,
    asset_param: Annotated[str | None, typer.Option(help="With --upload: the parameter the uploaded asset's id is bound to")] = None,
    cron: Annotated[str | None, typer.Option(help="Fire on this 5-field UTC schedule ('0 * * * *')")] = None,
    sets: Annotated[list[str] | None, typer.Option("--set", help="Parameter of every run, key=value (repeatable)")] = None,
) -> None:
    """Add an upload trigger (--upload TYPE --asset-param NAME) or a cron trigger (--cron 'M H D M W')."""
    if (upload is None) == (cron is None):
        raise typer.BadParameter("give exactly one of --upload and --cron")
    body: dict[str, Any] = {"type": "upload" if upload else "cron", "project_id": project, "params": parse_sets(sets or [])}
    body.update({"content_type": upload, "asset_param": asset_param} if upload else {"cron": cron})
    t = _client().request("POST", f"/v1/workflows/{workflow_id}/triggers", json=body)
    console.print(f"Trigger [bold]{t['id']}[/] on {t['content_type'] or t['cron']}")


@trigger_app.command("list")
def trigger_list(workflow_id: str) -> None:
    rows = list(_client().pages(f"/v1/workflows/{workflow_id}/triggers"))
    for r in rows:
        r["on"] = r["content_type"] or r["cron"]
    table(rows, ["id", "type", "on", "project_id", "asset_param", "last_slot", "created_at"], title="Triggers")


@trigger_app.command("delete")
def trigger_delete(trigger_id: str) -> None:
    _client().request("DELETE", f"/v1/workflow-triggers/{trigger_id}")
    console.print(f"Trigger {trigger_id} deleted")


def watch_run(client: Client, run_id: str, poll_s: float = 0.5,
              on_view: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """The run as a live tree until it ends (``on_view`` sees every poll's view); returns the ended run's view."""
    view = client.request("GET", f"/v1/workflow-runs/{run_id}")
    with Live(render(view), console=err, refresh_per_second=4) as live:
        while True:
            if on_view is not None:
                on_view(view)
            if view["state"] in TERMINAL:
                return view
            time.sleep(poll_s)
            view = client.request("GET", f"/v1/workflow-runs/{run_id}")
            live.update(render(view))


def follow(client: Client, run_id: str, poll_s: float = 0.5) -> dict[str, Any]:
    view = watch_run(client, run_id, poll_s)
    console.print(f"Run {run_id} [bold]{view['state']}[/]" + (f" — {view['error']}" if view["error"] else ""))
    for step in view["steps"]:
        for name, assets in step["outputs"].items():
            for asset_id in assets:
                console.print(f"  {step['id']}.{name}  {asset_id}  {client.url}/v1/assets/{asset_id}/content")
    if view["state"] != "succeeded":
        raise typer.Exit(1)
    return view


def render(view: dict[str, Any]) -> Tree:
    """The run as a tree: each step under the last of the steps it waits on, with its child job's item progress."""
    root = Tree(Text.assemble((view["workflow"], "bold"), f" {view['id']} ", (view["state"], STYLE.get(view["state"], ""))))
    nodes: dict[str, Tree] = {}
    for step in view["steps"]:
        parents = [nodes[d] for d in step["depends_on"] if d in nodes]
        parent = parents[-1] if parents else root
        nodes[step["id"]] = parent.add(_line(step))
    return root


def _line(step: dict[str, Any]) -> Group:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(min_width=12)
    grid.add_column(width=24)
    grid.add_column()
    counts = step["counts"] or {}
    total = counts.get("total") or None
    done = counts.get("succeeded", 0) + counts.get("failed", 0)
    bar = ProgressBar(total=total, completed=done, width=24, pulse=step["state"] == "running" and not total)
    detail = [f"{step['kind']}", step["state"]]
    if counts:
        detail.append(f"{done}/{total or '?'} items" + (f", {counts['failed']} failed" if counts.get("failed") else ""))
    if step["attempts"] > 1:
        detail.append(f"attempt {step['attempts']}")
    if step["not_before"] and step["state"] == "pending":
        detail.append(f"retry after {step['not_before']}")
    if step["job_id"]:
        detail.append(step["job_id"])
    grid.add_row(Text(step["id"], style=STYLE.get(step["state"], "")), bar, " · ".join(detail))
    parts: list[Any] = [grid]
    if step["reason"] and step["state"] in ("failed", "skipped", "cancelled", "pending"):
        parts.append(Text(f"  {step['reason']}", style="dim"))
    return Group(*parts)
