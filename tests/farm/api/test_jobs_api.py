"""Job submission through the API: validation, filters, kinds, illegal transitions."""

from __future__ import annotations

from tests.farm.api.conftest import Farm


def test_unknown_kind_and_bad_spec_name_the_field(farm: Farm) -> None:
    p = farm.project()
    r = farm.call("POST", "/v1/jobs", json={"kind": "video.nope", "project_id": p["id"]})
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("kind: unknown job kind 'video.nope'")
    r = farm.call("POST", "/v1/jobs", json={"kind": "debug.sleep", "project_id": p["id"], "spec": {"items": -1}})
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("spec.items:")
    r = farm.call("POST", "/v1/jobs", json={"kind": "debug.sleep", "project_id": p["id"], "spec": {"itmes": 3}})
    assert r.status_code == 422 and "spec.itmes" in r.json()["error"]["message"]
    r = farm.call("POST", "/v1/jobs", json={"kind": "debug.sleep", "project_id": p["id"], "priority": 101})
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("priority:")


def test_submit_list_filter_and_viewer_cannot_submit(farm: Farm) -> None:
    p = farm.project()
    job = farm.call("POST", "/v1/jobs", json={"kind": "debug.sleep", "project_id": p["id"], "spec": {"items": 3}, "priority": 80}).json()
    assert job["state"] == "queued" and job["priority"] == 80 and job["counts"] == {"total": 3, "succeeded": 0, "failed": 0}
    assert job["spec"] == {"items": 3, "delay_s": 0.1, "fail_rate": 0.0, "fail_job_above": 1.0, "seed": 0}
    ids = lambda **q: [j["id"] for j in farm.call("GET", "/v1/jobs", params=q).json()["data"]]  # noqa: E731
    assert ids() == [job["id"]] and ids(state="queued") == [job["id"]]
    assert ids(state="running") == [] and ids(kind="video.shots") == [] and ids(project_id=p["id"]) == [job["id"]]
    assert farm.call("POST", "/v1/jobs", "a_viewer", json={"kind": "debug.sleep", "project_id": p["id"]}).status_code == 403


def test_illegal_transitions_are_409(farm: Farm) -> None:
    p = farm.project()
    job = farm.call("POST", "/v1/jobs", json={"kind": "debug.sleep", "project_id": p["id"]}).json()
    r = farm.call("POST", f"/v1/jobs/{job['id']}/retry")
    assert r.status_code == 409 and "cannot be retried" in r.json()["error"]["message"]
    assert farm.call("POST", f"/v1/jobs/{job['id']}/cancel").json()["state"] == "cancelled"
    assert farm.call("POST", f"/v1/jobs/{job['id']}/cancel").status_code == 409
    assert farm.call("POST", f"/v1/jobs/{job['id']}/retry", json={"scope": "all"}).json()["state"] == "queued"


def test_idempotency_key_semantics(farm: Farm) -> None:
    p = farm.project()
    body = {"kind": "debug.sleep", "project_id": p["id"], "spec": {"items": 2}}
    first = farm.call("POST", "/v1/jobs", json=body, headers={"Idempotency-Key": "k1"})
    again = farm.call("POST", "/v1/jobs", json=body, headers={"Idempotency-Key": "k1"})
    assert first.status_code == 201 and again.status_code == 200 and again.json()["id"] == first.json()["id"]
    other = farm.call("POST", "/v1/jobs", json={**body, "spec": {"items": 3}}, headers={"Idempotency-Key": "k1"})
    assert other.status_code == 409 and other.json()["error"]["type"] == "idempotency_conflict"
    # keys are per organization
    pb = farm.project("pb", "b_admin")
    theirs = farm.call("POST", "/v1/jobs", "b_admin", json={**body, "project_id": pb["id"]}, headers={"Idempotency-Key": "k1"})
    assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]


def test_kinds_are_listed_with_their_schema(farm: Farm) -> None:
    kinds = {k["kind"]: k for k in farm.call("GET", "/v1/job-kinds").json()}
    assert "items" in kinds["debug.sleep"]["spec_schema"]["properties"]
