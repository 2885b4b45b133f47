"""The cluster page's reads tolerate a Ray that is away: the page says so instead of failing."""

from __future__ import annotations

import socket

from fastapi.testclient import TestClient

from farm.ui.cluster import read_cluster
from tests.farm.ui.conftest import Site


def test_an_unreachable_ray_is_reported_not_raised(site: tuple[Site, TestClient]) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    view = read_cluster(f"http://127.0.0.1:{port}")
    assert view.nodes == [] and view.apps == []
    assert [e.split(":")[0] for e in view.errors] == ["Ray nodes could not be read from http", "Serve applications could not be read"]

    s, client = site
    s.settings.ray.dashboard_url = f"http://127.0.0.1:{port}"
    assert client.post("/ui/signin", data={"api_key": s.keys["viewer"]}, follow_redirects=False).status_code == 303
    page = client.get("/ui/cluster")
    assert page.status_code == 200 and "Ray nodes could not be read" in page.text and "No nodes could be read." in page.text
