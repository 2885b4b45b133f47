"""API keys: bearer auth, roles, revocation, shown once, stored hashed."""

from __future__ import annotations

from sqlalchemy import select

from farm.db import ApiKey
from tests.farm.api.conftest import Farm


def test_missing_and_bad_keys_are_401(farm: Farm) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Bearer sk_farm_" + "x" * 43}, {"Authorization": "Basic abc"}):
        r = farm.client.get("/v1/projects", headers=headers)
        assert r.status_code == 401, headers
        assert r.json()["error"]["type"] == "authentication_error"


def test_roles(farm: Farm) -> None:
    assert farm.call("GET", "/v1/projects", "a_viewer").status_code == 200
    r = farm.call("POST", "/v1/projects", "a_viewer", json={"name": "v"})
    assert r.status_code == 403 and r.json()["error"]["type"] == "permission_denied"
    assert farm.call("POST", "/v1/projects", "a_member", json={"name": "m"}).status_code == 201
    assert farm.call("POST", "/v1/keys", "a_member", json={"name": "k"}).status_code == 403
    assert farm.call("GET", "/v1/keys", "a_member").status_code == 403


def test_key_lifecycle(farm: Farm) -> None:
    r = farm.call("POST", "/v1/keys", json={"name": "ci", "role": "viewer"})
    assert r.status_code == 201
    created = r.json()
    secret = created["key"]
    assert secret.startswith("sk_farm_") and len(secret) > 40
    listed = farm.call("GET", "/v1/keys").json()["data"]
    mine = next(k for k in listed if k["id"] == created["id"])
    assert "key" not in mine and secret.startswith("sk_farm_" + mine["prefix"])
    with farm.db.session() as s:
        row = s.scalars(select(ApiKey).where(ApiKey.id == created["id"])).one()
        assert secret not in (row.key_hash, row.prefix) and len(row.key_hash) == 64
    new = {"Authorization": f"Bearer {secret}"}
    assert farm.client.get("/v1/projects", headers=new).status_code == 200
    assert farm.call("DELETE", f"/v1/keys/{created['id']}").json()["revoked_at"] is not None
    assert farm.client.get("/v1/projects", headers=new).status_code == 401


def test_last_used_is_recorded(farm: Farm) -> None:
    created = farm.call("POST", "/v1/keys", json={"name": "u"}).json()
    assert created["last_used_at"] is None
    farm.client.get("/v1/projects", headers={"Authorization": f"Bearer {created['key']}"})
    assert farm.call("GET", f"/v1/keys/{created['id']}").json()["last_used_at"] is not None
