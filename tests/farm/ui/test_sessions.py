"""Dashboard sessions over HTTP on PostgreSQL: cookie flags, revocation, expiry, sign-out, sign-in limits."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from farm.db.models import UiSession, utcnow
from farm.ui import sessions
from tests.farm.ui.conftest import Site


def sign_in(client: TestClient, key: str, **kw: Any) -> Any:
    return client.post("/ui/signin", data={"api_key": key, "next": "/ui/projects"}, follow_redirects=False, **kw)


def test_a_session_reads_like_its_key_until_the_key_is_revoked_and_sign_out_ends_it(site: tuple[Site, TestClient]) -> None:
    s, client = site
    cross_site = sign_in(client, s.keys["member"], headers={"Sec-Fetch-Site": "cross-site"})
    assert cross_site.status_code == 403 and "set-cookie" not in cross_site.headers  # no login CSRF
    refused = sign_in(client, s.keys["member"] + "x")
    assert refused.status_code == 401 and "not valid" in refused.text and "set-cookie" not in refused.headers

    r = sign_in(client, s.keys["member"])
    assert r.status_code == 303 and r.headers["location"] == "/ui/projects"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie and "max-age=43200" in cookie
    assert client.get("/ui/jobs").status_code == 200
    assert client.get("/v1/projects").status_code == 200  # the cookie reads the API (what <video> and EventSource need)
    assert client.post("/v1/projects", json={"name": "by-cookie"}).status_code == 401  # and writes nothing there

    admin = {"Authorization": f"Bearer {s.keys['admin']}"}
    assert client.delete(f"/v1/keys/{s.key_ids['member']}", headers=admin).status_code in (200, 204)
    gone = client.get("/ui/jobs", follow_redirects=False)
    assert gone.status_code == 303 and gone.headers["location"].startswith("/ui/signin")
    assert client.get("/v1/projects").status_code == 401
    assert sign_in(client, s.keys["member"]).status_code == 401  # a revoked key signs nobody in

    assert sign_in(client, s.keys["viewer"]).status_code == 303
    before = s.sessions()
    page = client.get("/ui/jobs").text
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    assert client.post("/ui/signout", data={}, follow_redirects=False).status_code == 403  # a forged sign-out
    out = client.post("/ui/signout", data={"csrf_token": token}, follow_redirects=False)
    assert out.status_code == 303 and s.sessions() == before - 1
    assert client.get("/ui/jobs", follow_redirects=False).status_code == 303

    with s.db.session() as db:  # expiry, at the clock's edge
        cookie, row = sessions.sign_in(db, s.keys["viewer"], timedelta(minutes=5)) or pytest.fail("sign-in refused")
        assert sessions.resolve(db, cookie) is not None
        assert sessions.resolve(db, cookie, now=row.expires_at + timedelta(seconds=1)) is None
        assert cookie not in set(db.scalars(select(UiSession.id_hash)))  # only a hash of the cookie is kept
        assert sessions.sign_in(db, s.keys["viewer"], timedelta(minutes=5), now=utcnow() + timedelta(minutes=10)) is not None
        assert sessions.resolve(db, cookie) is None  # expired rows are swept at the next sign-in


CASES = [  # trusted proxy, request headers, scheme, Secure expected
    (False, {"X-Forwarded-Proto": "https"}, "http://testserver", False),  # anyone can send the header
    (True, {"X-Forwarded-Proto": "https"}, "http://testserver", True),
    (True, {"X-Forwarded-Proto": "http"}, "http://testserver", False),
    (False, {}, "https://testserver", True),
]


def test_the_cookie_is_secure_over_tls_and_sign_in_attempts_are_limited(postgres_url: str, tmp_path: Path) -> None:
    site = Site(postgres_url, tmp_path, signin_burst=len(CASES) + 2, signin_rate=0.001)
    client = site.start()
    try:
        for trusted, headers, base, secure in CASES:
            site.settings.ui.trusted_proxy = trusted  # read on every sign-in
            client.base_url = base  # type: ignore[assignment]
            r = sign_in(client, site.keys["admin"], headers=headers)
            assert r.status_code == 303
            assert ("secure" in r.headers["set-cookie"].lower()) is secure, (trusted, headers, base)
        client.base_url = "http://testserver"  # type: ignore[assignment]
        assert [sign_in(client, "sk_farm_guess" + str(i)).status_code for i in range(2)] == [401, 401]
        limited = sign_in(client, site.keys["admin"])  # the burst is spent: even the right key waits now
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1 and "Too many" in limited.text
    finally:
        client.__exit__(None, None, None)
        site.db.dispose()
