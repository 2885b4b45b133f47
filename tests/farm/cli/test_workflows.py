"""`farm workflows watch` draws the run as a tree: each step under what it waits on, with its child job's progress."""

from __future__ import annotations

from typing import Any

from rich.console import Console

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
