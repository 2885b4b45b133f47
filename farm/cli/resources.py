"""`farm keys|projects|assets`: the API's resources from the shell."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from farm.cli.client import Client, from_settings
from farm.cli.output import console, table, transfer_progress
from farm.settings import get_settings

keys_app = typer.Typer(help="API keys of your organization (admin).", no_args_is_help=True)
projects_app = typer.Typer(help="Projects.", no_args_is_help=True)
assets_app = typer.Typer(help="Assets: upload, list, download.", no_args_is_help=True)

JsonOut = Annotated[bool, typer.Option("--json", help="Print raw JSON")]


def _client() -> Client:
    return from_settings(get_settings())


def _emit(data: object, as_json: bool) -> bool:
    if as_json:
        console.print_json(json.dumps(data))
    return as_json


@keys_app.command("create")
def keys_create(name: str, role: Annotated[str, typer.Option(help="admin, member or viewer")] = "member", as_json: JsonOut = False) -> None:
    key = _client().request("POST", "/v1/keys", json={"name": name, "role": role})
    if not _emit(key, as_json):
        console.print(f"Created key [bold]{key['id']}[/] ({key['role']}). Store it now; it is not shown again:")
        console.print(f"[bold green]{key['key']}[/]")


@keys_app.command("list")
def keys_list(as_json: JsonOut = False) -> None:
    rows = list(_client().pages("/v1/keys"))
    if not _emit(rows, as_json):
        table(rows, ["id", "name", "role", "prefix", "created_at", "last_used_at", "revoked_at"], title="API keys")


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    key = _client().request("DELETE", f"/v1/keys/{key_id}")
    console.print(f"Revoked {key['id']} ({key['name']}) at {key['revoked_at']}")


@projects_app.command("create")
def projects_create(name: str, description: str = "", as_json: JsonOut = False) -> None:
    p = _client().request("POST", "/v1/projects", json={"name": name, "description": description})
    if not _emit(p, as_json):
        console.print(f"Created project [bold]{p['name']}[/] {p['id']}")


@projects_app.command("list")
def projects_list(as_json: JsonOut = False) -> None:
    rows = list(_client().pages("/v1/projects"))
    if not _emit(rows, as_json):
        table(rows, ["id", "name", "description", "created_at"], title="Projects")


@projects_app.command("get")
def projects_get(project_id: str) -> None:
    console.print_json(json.dumps(_client().request("GET", f"/v1/projects/{project_id}")))


@projects_app.command("update")
def projects_update(project_id: str, name: str | None = None, description: str | None = None) -> None:
    body = {k: v for k, v in {"name": name, "description": description}.items() if v is not None}
    console.print_json(json.dumps(_client().request("PATCH", f"/v1/projects/{project_id}", json=body)))


@projects_app.command("delete")
def projects_delete(project_id: str) -> None:
    _client().request("DELETE", f"/v1/projects/{project_id}")
    console.print(f"Deleted project {project_id}")


def upload_file(client: Client, project_id: str, path: Path) -> tuple[dict[str, object], bool]:
    with transfer_progress() as progress:
        task = progress.add_task(f"upload {path.name}", total=path.stat().st_size)
        return client.upload(project_id, path, lambda n: progress.advance(task, n))


@assets_app.command("upload")
def assets_upload(project_id: str, files: list[Path], as_json: JsonOut = False) -> None:
    client = _client()
    results = []
    for path in files:
        if not path.is_file():
            raise typer.BadParameter(f"{path} is not a file")
        asset, created = upload_file(client, project_id, path)
        results.append(asset)
        if not as_json:
            note = "" if created else " [yellow](identical content already in the project)[/]"
            console.print(f"{path.name} → [bold]{asset['id']}[/] {asset['content_type']} {asset['size']} B sha256 {str(asset['sha256'])[:12]}…{note}")
    _emit(results, as_json)


@assets_app.command("list")
def assets_list(
    project_id: str,
    kind: Annotated[str | None, typer.Option(help="video, image, audio, text, document, other")] = None,
    q: Annotated[str | None, typer.Option(help="name contains")] = None,
    as_json: JsonOut = False,
) -> None:
    params = {k: v for k, v in {"kind": kind, "q": q}.items() if v}
    rows = list(_client().pages(f"/v1/projects/{project_id}/assets", **params))
    if not _emit(rows, as_json):
        table(rows, ["id", "name", "kind", "content_type", "size", "created_at"], title="Assets")


@assets_app.command("download")
def assets_download(asset_id: str, out: Annotated[Path | None, typer.Option("--out", "-o")] = None) -> None:
    client = _client()
    meta = client.request("GET", f"/v1/assets/{asset_id}")
    dest = out or Path(meta["name"])
    tmp = dest.with_name(dest.name + ".part")
    with transfer_progress() as progress, tmp.open("wb") as fh:
        task = progress.add_task(f"download {meta['name']}", total=meta["size"])
        client.download(asset_id, fh, lambda n: progress.advance(task, n))
    tmp.replace(dest)
    console.print(f"Saved {dest} ({meta['size']} B)")
