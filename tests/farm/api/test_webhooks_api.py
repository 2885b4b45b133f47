"""/v1/webhooks through the real app: CRUD, the secret shown once, roles, isolation, live delivery."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from farm.ids import new_id
from farm.settings import StorageSettings
from farm.webhooks.signing import verify
from tests.farm.api.conftest import Farm, make_farm
from tests.farm.webhooks.receiver import Receiver


@pytest.fixture
def hook_farm(postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Farm]:
    """The farm with loopback targets allowed and a quick delivery worker."""
    for name, value in {"ALLOW_PRIVATE": "true", "POLL_S": "0.05", "RETRY_BASE_S": "0.05"}.items():
        monkeypatch.setenv(f"FARM_WEBHOOKS__{name}", value)
    yield from make_farm(postgres_url, tmp_path, StorageSettings(backend="local", local_root=tmp_path / "objects"))


def _settled(farm: Farm, hook_id: str, limit_s: float = 30) -> list[dict[str, Any]]:
    """The webhook's deliveries once none is pending (the worker records just after the receiver answers)."""
    deadline = time.monotonic() + limit_s
    while True:
        data = farm.call("GET", f"/v1/webhooks/{hook_id}/deliveries").json()["data"]
        if all(d["state"] != "pending" for d in data):
            return data
        assert time.monotonic() < deadline, data
        time.sleep(0.05)


def _create(farm: Farm, who: str = "a_admin", **body: Any) -> Any:
    return farm.call("POST", "/v1/webhooks", who, json=body)


def test_create_list_get_delete_and_the_secret_is_shown_once(hook_farm: Farm) -> None:
    farm = hook_farm
    r = _create(farm, url="http://127.0.0.1:9/hook", event_types=["job.*", "batch.completed", "job.*"])
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["secret"].startswith("whsec_") and len(created["secret"]) > 40
    assert created["event_types"] == ["batch.completed", "job.*"] and created["id"].startswith("wh_")
    shown = farm.call("GET", f"/v1/webhooks/{created['id']}").json()
    listed = farm.call("GET", "/v1/webhooks").json()
    assert "secret" not in shown and [h["id"] for h in listed["data"]] == [created["id"]] and listed["next_cursor"] is None
    assert created["secret"] not in str(listed) + str(shown)
    assert {k: v for k, v in created.items() if k != "secret"} == shown

    deleted = farm.call("DELETE", f"/v1/webhooks/{created['id']}")
    assert deleted.status_code == 200 and "secret" not in deleted.json()
    assert farm.call("GET", f"/v1/webhooks/{created['id']}").status_code == 404
    assert farm.call("DELETE", f"/v1/webhooks/{created['id']}").status_code == 404
    assert farm.call("GET", "/v1/webhooks").json()["data"] == []
    actions = [e["action"] for e in farm.call("GET", "/v1/audit-events").json()["data"]]
    assert actions[:2] == ["webhook.delete", "webhook.create"]
    assert created["secret"] not in str(farm.call("GET", "/v1/audit-events").json())


def test_refused_and_malformed_bodies_name_the_field(farm: Farm) -> None:
    """The default settings: no loopback or private targets."""
    cases = [
        ({"url": "http://127.0.0.1:8000/hook"}, "url: loopback/private addresses are not allowed"),
        ({"url": "http://localhost/hook"}, "url: loopback/private addresses are not allowed"),
        ({"url": "http://169.254.169.254/latest"}, "url: loopback/private addresses are not allowed"),
        ({"url": "ftp://example.com/x"}, "url: only http and https URLs are allowed"),
        ({"url": "https://u:p@example.com/"}, "url: credentials in the URL are not allowed"),
        ({"url": "https://example.com/", "event_types": ["Job!"]}, "event_types.0:"),
        ({"url": "https://example.com/", "secret": "mine"}, "secret:"),
        ({}, "url:"),
    ]
    for body, message in cases:
        r = farm.call("POST", "/v1/webhooks", json=body)
        assert r.status_code == 422 and r.json()["error"]["type"] == "invalid_request", body
        assert r.json()["error"]["message"].startswith(message), (body, r.json())
    assert _create(farm, url="https://hooks.example.com/farm").status_code == 201


def test_only_admins_manage_webhooks(farm: Farm) -> None:
    for who in ("a_member", "a_viewer"):
        assert _create(farm, who, url="https://hooks.example.com/").status_code == 403
        assert farm.call("GET", "/v1/webhooks", who).status_code == 403


def test_other_orgs_webhooks_are_not_found(farm: Farm) -> None:
    hook = _create(farm, url="https://hooks.example.com/a").json()
    for method, suffix in (("GET", ""), ("GET", "/deliveries"), ("DELETE", "")):
        theirs = farm.call(method, f"/v1/webhooks/{hook['id']}{suffix}", "b_admin")
        absent = farm.call(method, f"/v1/webhooks/{new_id('wh')}{suffix}", "b_admin")
        assert theirs.status_code == absent.status_code == 404 and theirs.json() == absent.json()
    assert farm.call("GET", "/v1/webhooks", "b_admin").json()["data"] == []
    assert farm.call("GET", f"/v1/webhooks/{hook['id']}").status_code == 200


def test_job_state_changes_reach_a_loopback_receiver_signed(hook_farm: Farm) -> None:
    """Submit (job.queued) and cancel (job.cancelled) a job; the worker thread of the app delivers both."""
    farm = hook_farm
    with Receiver(script=[500]) as rx:
        hook = _create(farm, url=rx.url(), event_types=["job.*"]).json()
        project = farm.project()
        job = farm.call("POST", "/v1/jobs", json={"kind": "debug.sleep", "project_id": project["id"], "spec": {"items": 2}}).json()
        rx.wait_for(1)  # job.queued, answered 500, comes first
        assert farm.call("POST", f"/v1/jobs/{job['id']}/cancel").json()["state"] == "cancelled"
        requests = rx.wait_for(3)  # the first job.queued attempt answered 500, so it comes twice
        settled = _settled(farm, hook["id"])

    for req in requests:
        assert req.headers["x-farm-webhook-id"] == hook["id"]
        assert verify(hook["secret"], req.headers["x-farm-signature"], req.body)
    events = {req.json()["type"]: req.json() for req in requests}
    assert sorted(events) == ["job.cancelled", "job.queued"]
    cancelled = events["job.cancelled"]["data"]
    assert cancelled == {
        "id": job["id"], "kind": "debug.sleep", "state": "cancelled", "priority": 50, "project_id": project["id"],
        "counts": {"total": 2, "succeeded": 0, "failed": 0}, "error": None, "result_asset_ids": [],
    }

    assert [d["state"] for d in settled] == ["succeeded", "succeeded"]
    page = farm.call("GET", f"/v1/webhooks/{hook['id']}/deliveries", params={"limit": 1}).json()
    newest = page["data"][0]
    assert newest["event_type"] == "job.cancelled" and page["next_cursor"]
    rest = farm.call("GET", f"/v1/webhooks/{hook['id']}/deliveries", params={"cursor": page["next_cursor"]}).json()
    queued = rest["data"][0]
    assert queued["event_type"] == "job.queued" and queued["state"] == "succeeded" and queued["next_attempt_at"] is None
    assert [(a["attempt"], a["status_code"]) for a in queued["attempts"]] == [(1, 500), (2, 200)]
    assert queued["attempts"][0]["error"] == "HTTP 500" and queued["payload"] == events["job.queued"]
    failed_only = farm.call("GET", f"/v1/webhooks/{hook['id']}/deliveries", params={"state": "failed"}).json()
    assert failed_only["data"] == []
