"""/v1/workflows and /v1/workflow-runs in-process: refused definitions name the step, templates, idempotency, tenancy.

No dispatcher runs here: the engine is called directly where a test needs a run advanced.
"""

from __future__ import annotations

from typing import Any

from farm.workflows import engine
from farm.workflows.definition import template
from tests.farm.api.conftest import Farm

SHOTS = {"id": "shots", "kind": "video.shots", "spec": {"asset_ids": "${params.videos}"}}


def definition(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"name": "bad", "params": {"videos": {"type": "string_list", "default": ["asset_x"]}}, "steps": list(steps)}


def test_bad_definitions_are_422_naming_the_step_and_field(farm: Farm) -> None:
    cases = {
        "cycle": (definition({"id": "a", "kind": "debug.sleep", "depends_on": ["b"]}, {"id": "b", "kind": "debug.sleep", "depends_on": ["a"]}),
                  "steps.a.depends_on: cycle: a → b → a"),
        "unknown kind": (definition({"id": "a", "kind": "video.upscale"}), "steps.a.kind: unknown job kind 'video.upscale'"),
        "missing output": (definition(SHOTS, {"id": "c", "kind": "video.caption", "spec": {"asset_ids": "${steps.shots.outputs.restyled}"}}),
                           "steps.c.spec.asset_ids: step 'shots' (video.shots) has no output 'restyled'"),
        "type mismatch": (definition(SHOTS, {"id": "c", "kind": "video.caption", "spec": {"asset_ids": "${steps.shots.outputs.edl}"}}),
                          "steps.c.spec.asset_ids: type mismatch: video.caption's asset_ids takes video assets, steps.shots.outputs.edl is edit_list"),
        "spec error": (definition({"id": "s", "kind": "debug.sleep", "spec": {"items": -1}}),
                       "steps.s.spec.items: Input should be greater than or equal to 0"),
    }
    p = farm.project()
    for name, (body, message) in cases.items():
        for path, payload in (("/v1/workflows", {"definition": body}), ("/v1/workflow-runs", {"definition": body, "project_id": p["id"]})):
            r = farm.call("POST", path, json=payload)
            assert r.status_code == 422 and r.json()["error"]["message"].startswith(message), (name, path, r.text)
    r = farm.call("POST", "/v1/workflow-runs", json={"definition": template("footage"), "project_id": p["id"]})
    assert r.status_code == 422 and r.json()["error"]["message"] == "params.videos: required (no default)"
    r = farm.call("POST", "/v1/workflows", json={"definition": "name: x\nsteps: [{id: a, kind: debug.sleep, retry: {max_attempts: 0}}]"})
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("steps.a.retry.max_attempts:")


def test_a_saved_template_runs_once_per_idempotency_key_and_only_for_its_org(farm: Farm) -> None:
    p = farm.project()
    saved = farm.call("POST", "/v1/workflows", json={"definition": template("footage")})  # YAML text, as `farm workflows create` sends
    assert saved.status_code == 201, saved.text
    wf = saved.json()
    assert wf["name"] == "footage" and [s["id"] for s in wf["definition"]["steps"]] == ["shots", "restyle", "caption"]
    assert [w["id"] for w in farm.call("GET", "/v1/workflows").json()["data"]] == [wf["id"]]

    body = {"project_id": p["id"], "params": {"videos": ["asset_1", "asset_2"], "short_side": 64}}
    first = farm.call("POST", f"/v1/workflows/{wf['id']}/runs", json=body, headers={"Idempotency-Key": "take-1"})
    assert first.status_code == 201, first.text
    run = first.json()
    assert run["state"] == "queued" and run["workflow_id"] == wf["id"] and run["params"]["short_side"] == 64
    assert [(s["id"], s["state"], s["depends_on"]) for s in run["steps"]] == [
        ("shots", "pending", []), ("restyle", "pending", ["shots"]), ("caption", "pending", ["restyle", "shots"])]
    replay = farm.call("POST", f"/v1/workflows/{wf['id']}/runs", json=body, headers={"Idempotency-Key": "take-1"})
    assert replay.status_code == 200 and replay.json()["id"] == run["id"]
    changed = farm.call("POST", f"/v1/workflows/{wf['id']}/runs", json={**body, "params": {"videos": ["asset_3"]}},
                        headers={"Idempotency-Key": "take-1"})
    assert changed.status_code == 409
    assert [j["id"] for j in farm.call("GET", "/v1/jobs", params={"kind": "workflow"}).json()["data"]] == [run["id"]]

    for method, path in (("GET", f"/v1/workflows/{wf['id']}"), ("GET", f"/v1/workflow-runs/{run['id']}"),
                         ("POST", f"/v1/workflow-runs/{run['id']}/cancel"), ("POST", f"/v1/workflow-runs/{run['id']}/retry")):
        assert farm.call(method, path, "b_admin").status_code == 404, path
    other = farm.project("pb", "b_admin")
    assert farm.call("POST", f"/v1/workflows/{wf['id']}/runs", "b_admin", json={"project_id": other["id"]}).status_code == 404
    assert farm.call("POST", f"/v1/workflows/{wf['id']}/runs", json={"project_id": other["id"]}).status_code == 404
    assert farm.call("GET", "/v1/workflows", "b_admin").json()["data"] == []
    assert farm.call("POST", f"/v1/workflows/{wf['id']}/runs", "a_viewer", json=body).status_code == 403


def test_a_run_cancelled_before_it_started_skips_every_step(farm: Farm) -> None:
    p = farm.project()
    run = farm.call("POST", "/v1/workflow-runs", json={"project_id": p["id"], "definition": definition(SHOTS)}).json()
    cancelled = farm.call("POST", f"/v1/workflow-runs/{run['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    engine.advance_all(farm.db, farm.settings)
    after = farm.call("GET", f"/v1/workflow-runs/{run['id']}").json()
    assert [(s["state"], s["reason"], s["job_ids"]) for s in after["steps"]] == [("skipped", "the run was cancelled", [])]
    assert farm.call("POST", f"/v1/workflow-runs/{run['id']}/retry").json()["steps"][0]["state"] == "pending"
