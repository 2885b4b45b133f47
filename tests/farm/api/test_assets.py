"""Assets on every database/object store pair: streamed upload, sniffing,
dedup, listing, download (whole, ranged, presigned), limits, delete."""

from __future__ import annotations

import hashlib
import io
import os
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image

from tests.farm.api.conftest import Farm


def png_bytes(color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format="PNG")
    return buf.getvalue()


def fetch(farm: Farm, url: str) -> httpx.Response:
    """Presigned URLs: S3's go to the S3 server; the local store's to the control plane."""
    if url.startswith(farm.settings.base_url):
        parts = urlsplit(url)
        return farm.client.get(f"{parts.path}?{parts.query}")
    return httpx.get(url)


def test_upload_sniffs_hashes_and_round_trips(any_farm: Farm) -> None:
    p = any_farm.project()
    data = png_bytes()
    r = any_farm.upload(p["id"], data, name="holiday.txt")  # a lying extension
    assert r.status_code == 201, r.text
    a = r.json()
    assert a["content_type"] == "image/png" and a["kind"] == "image"
    assert a["size"] == len(data) and a["sha256"] == hashlib.sha256(data).hexdigest()
    assert a["name"] == "holiday.txt"
    body = any_farm.call("GET", f"/v1/assets/{a['id']}/content")
    assert body.status_code == 200 and body.content == data
    assert body.headers["content-type"] == "image/png"
    assert "holiday.txt" in body.headers["content-disposition"]


def test_multipart_upload_of_several_parts(any_farm: Farm) -> None:
    p = any_farm.project()
    data = os.urandom(11 * 1024 * 1024 + 17)  # > two 5 MiB S3 parts
    a = any_farm.upload(p["id"], data, name="noise.bin").json()
    assert a["size"] == len(data) and a["sha256"] == hashlib.sha256(data).hexdigest()
    assert a["content_type"] == "application/octet-stream"
    got = any_farm.call("GET", f"/v1/assets/{a['id']}/content").content
    assert hashlib.sha256(got).hexdigest() == a["sha256"]


def test_identical_upload_is_deduplicated(any_farm: Farm) -> None:
    p = any_farm.project()
    first = any_farm.upload(p["id"], b"same bytes", name="a.txt")
    again = any_farm.upload(p["id"], b"same bytes", name="b.txt")
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    listed = any_farm.call("GET", f"/v1/projects/{p['id']}/assets").json()["data"]
    assert len(listed) == 1
    other = any_farm.project("other")
    assert any_farm.upload(other["id"], b"same bytes").status_code == 201  # per project


def test_ranged_download(any_farm: Farm) -> None:
    p = any_farm.project()
    data = bytes(range(256)) * 10
    a = any_farm.upload(p["id"], data).json()
    url = f"/v1/assets/{a['id']}/content"
    r = any_farm.call("GET", url, headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == data[10:20]
    assert r.headers["content-range"] == f"bytes 10-19/{len(data)}"
    assert any_farm.call("GET", url, headers={"Range": "bytes=-5"}).content == data[-5:]
    assert any_farm.call("GET", url, headers={"Range": "bytes=99999-"}).status_code == 416


def test_presigned_redirect_downloads_the_bytes(any_farm: Farm) -> None:
    p = any_farm.project()
    data = png_bytes((1, 2, 3))
    a = any_farm.upload(p["id"], data, name="pic.png").json()
    r = any_farm.call("GET", f"/v1/assets/{a['id']}/content", params={"redirect": "true"}, follow_redirects=False)
    assert r.status_code == 307
    got = fetch(any_farm, r.headers["location"])
    assert got.status_code == 200 and got.content == data
    if any_farm.settings.storage.backend == "local":  # moto does not check S3 signatures
        tampered = r.headers["location"].replace("signature=", "signature=0")
        assert fetch(any_farm, tampered).status_code == 403


def test_list_filters_and_search(any_farm: Farm) -> None:
    p = any_farm.project()
    any_farm.upload(p["id"], png_bytes(), name="Hero_shot.png")
    any_farm.upload(p["id"], b'{"a": 1}\n{"a": 2}\n', name="prompts.jsonl")
    any_farm.upload(p["id"], b"plain words", name="notes_100%.txt")
    url = f"/v1/projects/{p['id']}/assets"
    names = lambda **q: sorted(a["name"] for a in any_farm.call("GET", url, params=q).json()["data"])  # noqa: E731
    assert names() == ["Hero_shot.png", "notes_100%.txt", "prompts.jsonl"]
    assert names(kind="image") == ["Hero_shot.png"]
    assert names(content_type="application/jsonl") == ["prompts.jsonl"]
    assert names(q="hero") == ["Hero_shot.png"]
    assert names(q="100%") == ["notes_100%.txt"]
    assert names(q="_") == ["Hero_shot.png", "notes_100%.txt"]  # literal, not a wildcard
    assert names(kind="video") == []


def test_size_limit_rejects_and_leaves_nothing(any_farm: Farm) -> None:
    any_farm.settings.storage.max_upload_bytes = 1000
    p = any_farm.project()
    r = any_farm.upload(p["id"], b"x" * 5000)
    assert r.status_code == 413 and r.json()["error"]["type"] == "payload_too_large"
    assert any_farm.call("GET", f"/v1/projects/{p['id']}/assets").json()["data"] == []
    assert any_farm.upload(p["id"], b"x" * 1000).status_code == 201


def test_bad_upload_requests(any_farm: Farm) -> None:
    p = any_farm.project()
    url = f"/v1/projects/{p['id']}/assets"
    assert any_farm.call("POST", url, content=b"raw").status_code == 415
    empty = any_farm.upload(p["id"], b"")
    assert empty.status_code == 422 and "empty" in empty.json()["error"]["message"]
    nofile = any_farm.call("POST", url, files={"other": ("x", b"data")})
    assert nofile.status_code == 422 and "file" in nofile.json()["error"]["message"]


def test_delete_removes_row_and_object(any_farm: Farm) -> None:
    p = any_farm.project()
    a = any_farm.upload(p["id"], b"to be deleted").json()
    from farm.db import Asset

    with any_farm.db.session() as s:
        key = s.get(Asset, a["id"]).object_key
    store = any_farm.client.app.state.runtime.store
    assert store.exists(key)
    assert any_farm.call("DELETE", f"/v1/assets/{a['id']}").status_code == 204
    assert any_farm.call("GET", f"/v1/assets/{a['id']}").status_code == 404
    assert not store.exists(key)


@pytest.mark.parametrize("name", ["../../etc/passwd", "a/b\\c.txt", "\x00evil"])
def test_object_keys_never_come_from_file_names(farm: Farm, name: str) -> None:
    p = farm.project()
    a = farm.upload(p["id"], b"payload " + name.encode(), name=name).json()
    from farm.db import Asset

    with farm.db.session() as s:
        key = s.get(Asset, a["id"]).object_key
    assert key == f"orgs/{farm.orgs['a']}/projects/{p['id']}/assets/{a['id']}"
    assert "/" not in a["name"] and "\\" not in a["name"] and "\x00" not in a["name"]
