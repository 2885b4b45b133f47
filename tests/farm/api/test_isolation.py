"""Tenant isolation: org B sees org A's ids exactly as it sees ids that do not exist."""

from __future__ import annotations

from typing import Any

from farm.ids import new_id
from tests.farm.api.conftest import Farm


def _routes(project_id: str, asset_id: str, key_id: str, job_id: str, webhook_id: str, file_id: str, batch_id: str,
            workflow_id: str, run_id: str, trigger_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        ("POST", f"/v1/workflows/{workflow_id}/triggers", {"json": {"type": "upload", "project_id": project_id, "content_type": "video/*"}}),
        ("GET", f"/v1/workflows/{workflow_id}/triggers", {}),
        ("GET", f"/v1/workflow-triggers/{trigger_id}", {}),
        ("DELETE", f"/v1/workflow-triggers/{trigger_id}", {}),
        ("GET", f"/v1/workflows/{workflow_id}", {}),
        ("POST", f"/v1/workflows/{workflow_id}/runs", {"json": {"project_id": project_id}}),
        ("GET", f"/v1/workflow-runs/{run_id}", {}),
        ("POST", f"/v1/workflow-runs/{run_id}/cancel", {}),
        ("POST", f"/v1/workflow-runs/{run_id}/retry", {}),
        ("GET", f"/v1/files/{file_id}", {}),
        ("GET", f"/v1/files/{file_id}/content", {}),
        ("DELETE", f"/v1/files/{file_id}", {}),
        ("POST", "/v1/batches", {"json": {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}}),
        ("GET", f"/v1/batches/{batch_id}", {}),
        ("POST", f"/v1/batches/{batch_id}/cancel", {}),
        ("POST", "/v1/jobs", {"json": {"kind": "debug.sleep", "project_id": project_id}}),
        ("GET", f"/v1/jobs/{job_id}", {}),
        ("GET", f"/v1/jobs/{job_id}/events", {}),
        ("POST", f"/v1/jobs/{job_id}/retry", {}),
        ("POST", f"/v1/jobs/{job_id}/cancel", {}),
        ("GET", f"/v1/projects/{project_id}", {}),
        ("PATCH", f"/v1/projects/{project_id}", {"json": {"description": "pwned"}}),
        ("DELETE", f"/v1/projects/{project_id}", {}),
        ("GET", f"/v1/projects/{project_id}/assets", {}),
        ("POST", f"/v1/projects/{project_id}/assets", {"files": {"file": ("x.txt", b"intruder")}}),
        ("GET", f"/v1/assets/{asset_id}", {}),
        ("GET", f"/v1/assets/{asset_id}/content", {}),
        ("GET", f"/v1/assets/{asset_id}/content?redirect=true", {"follow_redirects": False}),
        ("DELETE", f"/v1/assets/{asset_id}", {}),
        ("GET", f"/v1/keys/{key_id}", {}),
        ("DELETE", f"/v1/keys/{key_id}", {}),
        ("GET", f"/v1/webhooks/{webhook_id}", {}),
        ("GET", f"/v1/webhooks/{webhook_id}/deliveries", {}),
        ("DELETE", f"/v1/webhooks/{webhook_id}", {}),
    ]


def test_every_route_with_an_id_hides_other_orgs(farm: Farm) -> None:
    project = farm.project("secret")
    asset = farm.upload(project["id"], b"org A only").json()
    key = farm.call("POST", "/v1/keys", json={"name": "a-ci"}).json()
    job = farm.call("POST", "/v1/jobs", json={"kind": "debug.sleep", "project_id": project["id"]}).json()
    webhook = farm.call("POST", "/v1/webhooks", json={"url": "https://hooks.example.com/a", "event_types": ["batch.completed"]}).json()
    file = farm.call("POST", "/v1/files", data={"purpose": "batch"}, files={"file": ("in.jsonl", b'{"custom_id": "x"}\n')}).json()
    batch = farm.call("POST", "/v1/batches", json={"input_file_id": file["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}).json()
    flow = {"name": "w", "steps": [{"id": "s", "kind": "debug.sleep"}]}
    workflow = farm.call("POST", "/v1/workflows", json={"definition": flow}).json()
    run = farm.call("POST", f"/v1/workflows/{workflow['id']}/runs", json={"project_id": project["id"]}).json()
    trigger = farm.call("POST", f"/v1/workflows/{workflow['id']}/triggers", json={"type": "cron", "cron": "0 * * * *", "project_id": project["id"]}).json()
    foreign = _routes(project["id"], asset["id"], key["id"], job["id"], webhook["id"], file["id"], batch["id"], workflow["id"], run["id"], trigger["id"])
    missing = _routes(new_id("proj"), new_id("asset"), new_id("key"), new_id("job"), new_id("wh"), new_id("file"), new_id("batch"),
                      new_id("wf"), new_id("job"), new_id("trg"))
    # The dashboard's pages (/ui) are HTML: tests/farm/ui/test_routes.py opens each of them as another org.
    app_paths = {r.path for r in farm.client.app.routes if "{" in getattr(r, "path", "") and not r.path.startswith("/ui/")}
    covered = {
        p.replace(project["id"], "{project_id}").replace(asset["id"], "{asset_id}").replace(key["id"], "{key_id}").replace(job["id"], "{job_id}").replace(webhook["id"], "{webhook_id}").replace(file["id"], "{file_id}").replace(batch["id"], "{batch_id}")
        .replace(workflow["id"], "{workflow_id}").replace(run["id"], "{run_id}").replace(trigger["id"], "{trigger_id}").split("?")[0]
        for _, p, _ in foreign
    }
    assert app_paths - {"/v1/objects/{key:path}"} <= covered, "a route with an id is missing from this test"

    for (method, path, kw), (_, missing_path, _) in zip(foreign, missing):
        theirs = farm.call(method, path, "b_admin", **kw)
        absent = farm.call(method, missing_path, "b_admin", **kw)
        assert theirs.status_code == 404, (method, path, theirs.status_code)
        assert theirs.json() == absent.json(), (method, path)

    # nothing of org A changed
    assert farm.call("GET", f"/v1/projects/{project['id']}").json()["description"] == ""
    assert farm.call("GET", f"/v1/assets/{asset['id']}/content").content == b"org A only"
    assert farm.call("GET", f"/v1/keys/{key['id']}").json()["revoked_at"] is None
    assert farm.call("GET", f"/v1/jobs/{job['id']}").json()["state"] == "queued"
    assert farm.call("GET", f"/v1/workflow-runs/{run['id']}").json()["state"] == "queued"
    assert farm.call("GET", f"/v1/workflow-triggers/{trigger['id']}").json()["cron"] == "0 * * * *"
    assert farm.call("GET", f"/v1/webhooks/{webhook['id']}").status_code == 200
    assert farm.call("GET", f"/v1/files/{file['id']}/content").content == b'{"custom_id": "x"}\n'
    assert farm.call("GET", f"/v1/batches/{batch['id']}").json()["status"] == "validating"
    assert [j["id"] for j in farm.call("GET", "/v1/jobs", "b_admin").json()["data"]] == []
    names = [a["name"] for a in farm.call("GET", f"/v1/projects/{project['id']}/assets").json()["data"]]
    assert names == [asset["name"]]


def test_lists_only_show_own_org(farm: Farm) -> None:
    farm.project("a-proj")
    farm.project("b-proj", "b_admin")
    assert [p["name"] for p in farm.call("GET", "/v1/projects", "b_admin").json()["data"]] == ["b-proj"]
    b_keys = farm.call("GET", "/v1/keys", "b_admin").json()["data"]
    assert {k["name"] for k in b_keys} == {"b-admin", "b-member", "b-viewer"}
    events = farm.call("GET", "/v1/audit-events", "b_admin").json()["data"]
    assert [e["action"] for e in events] == ["project.create"]


def test_malformed_ids_are_plain_404(farm: Farm) -> None:
    for path in ("/v1/projects/nope", "/v1/assets/../../etc", "/v1/keys/key_zz", "/v1/assets/%00"):
        r = farm.call("GET", path)
        assert r.status_code == 404, path


def test_list_cursors_must_be_ids(farm: Farm) -> None:
    """A bad `after` is the caller's mistake (400 naming it), never a database error."""
    for path in ("/v1/files", "/v1/batches"):
        for after in ("\x00", "nope", "batch_" + "0" * 28 + "'"):
            r = farm.call("GET", path, params={"after": after})
            assert r.status_code == 400, (path, after, r.text)
            assert r.json()["error"]["param"] == "after", r.text
        assert farm.call("GET", path, params={"after": "batch_" + "0" * 28}).status_code == 200
    r = farm.call("GET", "/v1/jobs", params={"project_id": "\x00"})
    assert r.status_code == 422 and "project_id" in r.text, r.text
