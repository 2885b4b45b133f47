"""Every successful mutation leaves exactly one audit event, attributed to its key."""

from __future__ import annotations

from tests.farm.api.conftest import Farm


def test_mutations_are_audited(farm: Farm) -> None:
    p = farm.project("audited", "a_member")
    farm.call("PATCH", f"/v1/projects/{p['id']}", "a_member", json={"description": "d"})
    a = farm.upload(p["id"], b"audit me", who="a_member").json()
    farm.call("DELETE", f"/v1/assets/{a['id']}", "a_member")
    farm.call("DELETE", f"/v1/projects/{p['id']}", "a_member")
    k = farm.call("POST", "/v1/keys", json={"name": "tmp"}).json()
    farm.call("DELETE", f"/v1/keys/{k['id']}")
    farm.call("GET", "/v1/projects")  # reads are not audited
    farm.call("POST", "/v1/projects", "a_viewer", json={"name": "denied"})  # refused: nothing happened

    events = farm.call("GET", "/v1/audit-events").json()["data"]
    actions = [e["action"] for e in reversed(events)]
    assert actions == [
        "project.create", "project.update", "asset.create", "asset.delete",
        "project.delete", "key.create", "key.revoke",
    ]
    member_key = next(x for x in farm.call("GET", "/v1/keys").json()["data"] if x["name"] == "a-member")
    assert {e["key_id"] for e in events[2:]} == {member_key["id"]}
    assert events[-1]["target_id"] == p["id"]
    only = farm.call("GET", "/v1/audit-events", params={"action": "asset.create"}).json()["data"]
    assert [e["target_id"] for e in only] == [a["id"]]
    assert farm.call("GET", "/v1/audit-events", "a_member").status_code == 403
