"""Projects: CRUD, validation, pagination, conflicts."""

from __future__ import annotations

from tests.farm.api.conftest import Farm


def test_create_get_update_delete(farm: Farm) -> None:
    p = farm.project("trailer")
    assert p["name"] == "trailer" and p["id"].startswith("proj_")
    got = farm.call("GET", f"/v1/projects/{p['id']}").json()
    assert got == p
    upd = farm.call("PATCH", f"/v1/projects/{p['id']}", json={"description": "cut v2"}).json()
    assert upd["description"] == "cut v2" and upd["name"] == "trailer"
    assert farm.call("DELETE", f"/v1/projects/{p['id']}").status_code == 204
    assert farm.call("GET", f"/v1/projects/{p['id']}").status_code == 404


def test_duplicate_name_conflicts(farm: Farm) -> None:
    farm.project("dup")
    r = farm.call("POST", "/v1/projects", json={"name": "dup"})
    assert r.status_code == 409
    assert r.json()["error"]["type"] == "conflict"
    # the same name in another org is fine
    assert farm.call("POST", "/v1/projects", "b_admin", json={"name": "dup"}).status_code == 201


def test_validation_error_names_the_field(farm: Farm) -> None:
    r = farm.call("POST", "/v1/projects", json={"name": "x" * 101})
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["type"] == "invalid_request" and err["message"].startswith("name:")
    r = farm.call("POST", "/v1/projects", json={"name": "ok", "colour": "red"})
    assert r.status_code == 422 and "colour" in r.json()["error"]["message"]


def test_pagination_walks_every_project_once(farm: Farm) -> None:
    made = {farm.project(f"p{i}")["id"] for i in range(7)}
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = farm.call("GET", "/v1/projects", params=params).json()
        assert len(page["data"]) <= 3
        seen += [p["id"] for p in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(made) and len(seen) == len(set(seen))
    assert seen == sorted(seen, reverse=True)  # newest first


def test_project_with_assets_cannot_be_deleted(farm: Farm) -> None:
    p = farm.project()
    assert farm.upload(p["id"], b"hello").status_code == 201
    r = farm.call("DELETE", f"/v1/projects/{p['id']}")
    assert r.status_code == 409
