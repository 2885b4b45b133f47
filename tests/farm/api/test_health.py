"""Liveness, readiness (database, object store, Ray) and Prometheus metrics."""

from __future__ import annotations

from cluster.local import LocalRayHead
from tests.farm.api.conftest import Farm


def test_healthz_needs_no_key(farm: Farm) -> None:
    r = farm.client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_readyz_reports_each_dependency(farm: Farm, ray_cluster: LocalRayHead) -> None:
    farm.settings.ray.dashboard_url = ray_cluster.dashboard_url
    r = farm.client.get("/readyz")
    assert r.status_code == 200, r.text
    assert {k: v["ok"] for k, v in r.json()["checks"].items()} == {"database": True, "object_store": True, "ray": True}


def test_readyz_fails_when_ray_is_gone(farm: Farm) -> None:
    farm.settings.ray.dashboard_url = "http://127.0.0.1:9"  # nothing listens there
    r = farm.client.get("/readyz")
    assert r.status_code == 503
    checks = r.json()["checks"]
    assert checks["ray"]["ok"] is False and checks["database"]["ok"] is True


def test_readyz_fails_when_store_is_unreachable(farm: Farm, ray_cluster: LocalRayHead) -> None:
    farm.settings.ray.dashboard_url = ray_cluster.dashboard_url
    root = farm.settings.storage.local_root
    root.rename(root.with_name("moved"))
    r = farm.client.get("/readyz")
    assert r.status_code == 503 and r.json()["checks"]["object_store"]["ok"] is False


def test_metrics_count_requests_by_route(farm: Farm) -> None:
    p = farm.project()
    farm.upload(p["id"], b"0123456789")
    farm.call("GET", "/v1/projects/proj_00000000000000000000000000000")
    text = farm.client.get("/metrics").text
    assert 'farm_http_requests_total{method="POST",route="/v1/projects",status="201"} 1.0' in text
    assert 'route="/v1/projects/{project_id}",status="404"' in text
    assert "farm_asset_upload_bytes_total 10.0" in text
    assert "farm_http_request_duration_seconds_bucket" in text
