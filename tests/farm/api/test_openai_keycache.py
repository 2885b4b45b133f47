"""The generation routes trust a verified key for `key_cache_s`: a revocation through the API still applies at once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from farm.accounts import revoke_key
from farm.db import ApiKey
from farm.settings import ServeSettings, StorageSettings
from tests.farm.api.conftest import Farm, make_farm

TTL_S = 1.0


def _farm(postgres_url: str, tmp_path: Path, key_cache_s: float) -> Iterator[Farm]:
    yield from make_farm(postgres_url, tmp_path, StorageSettings(backend="local", local_root=tmp_path / "objects"),
                         serve=ServeSettings(key_cache_s=key_cache_s))


@pytest.fixture
def cached(postgres_url: str, tmp_path: Path) -> Iterator[Farm]:
    yield from _farm(postgres_url, tmp_path, TTL_S)


@pytest.fixture
def uncached(postgres_url: str, tmp_path: Path) -> Iterator[Farm]:
    yield from _farm(postgres_url, tmp_path, 0)


def _new_key(farm: Farm) -> tuple[str, dict[str, str]]:
    created = farm.call("POST", "/v1/keys", json={"name": "gen", "role": "member"}).json()
    return created["id"], {"Authorization": f"Bearer {created['key']}"}


def _revoke_elsewhere(farm: Farm, key_id: str) -> None:
    """What `farm keys revoke` or another control-plane process does: the row changes, this process is not told."""
    with farm.db.session() as s:
        revoke_key(s, s.scalars(select(ApiKey).where(ApiKey.id == key_id)).one())
        s.commit()


def test_a_key_revoked_through_the_api_is_refused_at_once(cached: Farm) -> None:
    key_id, headers = _new_key(cached)
    assert cached.client.get("/v1/models", headers=headers).status_code == 200  # verified, now trusted for a while
    assert cached.call("DELETE", f"/v1/keys/{key_id}").status_code == 200
    r = cached.client.get("/v1/models", headers=headers)
    assert r.status_code == 401 and r.json()["error"]["message"] == "invalid or revoked API key"


def test_a_key_revoked_elsewhere_stops_working_within_the_cache_time(cached: Farm) -> None:
    key_id, headers = _new_key(cached)
    assert cached.client.get("/v1/models", headers=headers).status_code == 200
    _revoke_elsewhere(cached, key_id)
    revoked = time.monotonic()
    while cached.client.get("/v1/models", headers=headers).status_code == 200:
        assert time.monotonic() - revoked < TTL_S + 0.5, "a revoked key kept working past FARM_SERVE__KEY_CACHE_S"
        time.sleep(0.05)
    assert cached.client.get("/v1/models", headers=headers).status_code == 401  # and stays refused
    # The farm's own routes never cache: refused there from the start.
    assert cached.client.get("/v1/projects", headers=headers).status_code == 401


def test_without_the_cache_a_revocation_anywhere_applies_at_once(uncached: Farm) -> None:
    key_id, headers = _new_key(uncached)
    assert uncached.client.get("/v1/models", headers=headers).status_code == 200
    _revoke_elsewhere(uncached, key_id)
    assert uncached.client.get("/v1/models", headers=headers).status_code == 401
