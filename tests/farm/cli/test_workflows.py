"""`farm workflows watch` draws the run as a tree: each step under what it waits on, with its child job's progress."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from farm.cli.workflows import render


def step(id_: str, state: str, depends_on: list[str], counts: dict[str, int] | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": id_, "kind": "video." + id_, "state": state, "attempts": extra.get("attempts", 1 if counts else 0),
            "job_ids": ["job_1"] if counts else [], "job_id": "job_1" if counts else None, "counts": counts, "outputs": {},
            "not_before": extra.get("not_before"), "reason": extra.get("reason"), "depends_on": depends_on}


def test_the_tree_follows_the_dag_and_shows_progress_retries_and_reasons() -> None:
    view = {"id": "job_run", "workflow": "footage", "state": "running", "steps": [
        step("shots", "succeeded", [], {"total": 2, "succeeded": 2, "failed": 0}),
        step("restyle", "pending", ["shots"], {"total": 2, "succeeded": 0, "failed": 1}, attempts=2,
             not_before="2026-12-03T10:00:00Z", reason="attempt 1 of 2: job job_1 failed"),
        step("caption", "pending", ["shots", "restyle"]),
    ]}
    console = Console(width=220, record=True, color_system=None)
    console.print(render(view))
    lines = console.export_text().splitlines()
    assert lines[0] == "footage job_run running"
    shots, restyle, reason, caption = lines[1:5]
    assert shots.startswith("└── shots") and "2/2 items" in shots
    assert restyle.startswith("    └── restyle") and "1/2 items, 1 failed" in restyle and "attempt 2" in restyle
    assert "retry after 2026-12-03T10:00:00Z" in restyle and "attempt 1 of 2: job job_1 failed" in reason
    assert caption.startswith("        └── caption") and "video.caption · pending" in caption


def test_trigger_add_list_delete(postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`farm workflows trigger add|list|delete` against a real control plane."""
    from farm.cli import workflows as cli
    from farm.cli.client import Client
    from farm.settings import StorageSettings
    from tests.farm.api.conftest import make_farm

    for farm in make_farm(postgres_url, tmp_path, StorageSettings(backend="local", local_root=tmp_path / "objects")):
        client = Client("http://testserver", None)
        client.http = farm.client
        client.http.headers.update(farm.h())
        monkeypatch.setattr(cli, "_client", lambda: client)
        project = farm.project()["id"]
        wf = farm.call("POST", "/v1/workflows", json={"definition": {"name": "w", "params": {"clip": {"type": "string"}},
                                                                     "steps": [{"id": "s", "kind": "debug.sleep"}]}}).json()["id"]
        runner = CliRunner()
        added = runner.invoke(cli.workflows_app, ["trigger", "add", wf, "-p", project, "--upload", "video/*", "--asset-param", "clip"])
        assert added.exit_code == 0, added.output
        nightly = runner.invoke(cli.workflows_app, ["trigger", "add", wf, "-p", project, "--cron", "0 3 * * *", "--set", "clip=x"])
        assert nightly.exit_code == 0, nightly.output
        both = runner.invoke(cli.workflows_app, ["trigger", "add", wf, "-p", project, "--cron", "* * * * *", "--upload", "video/*"])
        assert both.exit_code != 0
        ids = [t["id"] for t in farm.call("GET", f"/v1/workflows/{wf}/triggers").json()["data"]]
        assert len(ids) == 2 and all(i in added.output + nightly.output for i in ids)
        listed = runner.invoke(cli.workflows_app, ["trigger", "list", wf], terminal_width=250)
        assert listed.exit_code == 0 and "video/*" in listed.output and "0 3 * * *" in listed.output, listed.output
        assert runner.invoke(cli.workflows_app, ["trigger", "delete", ids[0]]).exit_code == 0
        assert [t["id"] for t in farm.call("GET", f"/v1/workflows/{wf}/triggers").json()["data"]] == ids[1:]
