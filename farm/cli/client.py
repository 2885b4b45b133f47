"""HTTP client for the CLI: finds the farm and its key, turns errors into messages."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from farm.settings import Settings


class CliError(Exception):
    """Printed as a one-line error; the command exits 1."""


class _ProgressReader:
    """A file wrapper that reports bytes read, for upload progress bars."""

    def __init__(self, fh: BinaryIO, advance: Callable[[int], None]) -> None:
        self._fh, self._advance = fh, advance

    def read(self, n: int = -1) -> bytes:
        chunk = self._fh.read(n)
        self._advance(len(chunk))
        return chunk


class Client:
    def __init__(self, url: str, key: str | None, *, timeout: float = 60) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise CliError(f"cannot reach the farm at {self.url}: {exc} (is `farm up` running?)") from None
        return self._result(resp)

    @staticmethod
    def _result(resp: httpx.Response) -> Any:
        if resp.status_code >= 400:
            try:
                err = resp.json()["error"]
                raise CliError(f"{resp.status_code} {err['type']}: {err['message']}")
            except (ValueError, KeyError, TypeError):
                raise CliError(f"{resp.status_code}: {resp.text[:300]}") from None
        if resp.status_code == 204 or not resp.content:
            return None
        return resp.json()

    def pages(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        cursor = None
        while True:
            page = self.request("GET", path, params={**params, **({"cursor": cursor} if cursor else {})})
            yield from page["data"]
            cursor = page["next_cursor"]
            if not cursor:
                return

    def upload(self, project_id: str, path: Path, advance: Callable[[int], None] = lambda _: None) -> tuple[dict[str, Any], bool]:
        with path.open("rb") as fh:
            files = {"file": (path.name, _ProgressReader(fh, advance), "application/octet-stream")}
            try:
                resp = self.http.post(f"/v1/projects/{project_id}/assets", files=files, timeout=None)
            except httpx.TransportError as exc:
                raise CliError(f"upload failed: {exc}") from None
        return self._result(resp), resp.status_code == 201

    def download(self, asset_id: str, dest: BinaryIO, advance: Callable[[int], None] = lambda _: None) -> None:
        with self.http.stream("GET", f"/v1/assets/{asset_id}/content", timeout=None) as resp:
            if resp.status_code >= 400:
                resp.read()
                self._result(resp)
            for chunk in resp.iter_bytes(1 << 20):
                dest.write(chunk)
                advance(len(chunk))


def credentials_file(settings: Settings) -> Path:
    return settings.home / "credentials.json"


def from_settings(settings: Settings) -> Client:
    """FARM_URL / FARM_API_KEY win; else what `farm up` saved under .farm/."""
    saved: dict[str, str] = {}
    path = credentials_file(settings)
    if path.exists():
        saved = json.loads(path.read_text())
    url = os.environ.get("FARM_URL") or saved.get("url") or settings.base_url
    key = os.environ.get("FARM_API_KEY") or saved.get("api_key")
    if not key:
        raise CliError("no API key: set FARM_API_KEY, or run `farm up` / `farm admin create-org NAME` first")
    return Client(url, key)
