"""The `farm` command."""

from __future__ import annotations

import sys
import threading
from typing import Annotated

import typer

from farm.bootstrap import OrgExists, create_org_with_admin, org_count
from farm.cli.client import CliError
from farm.cli.output import console, err, table
from farm.cli.jobs import jobs_app
from farm.cli.resources import assets_app, keys_app, projects_app
from farm.cli.workflows import workflows_app
from farm.db import Database
from farm.settings import get_settings

app = typer.Typer(help="StoryCore Farm: a render farm for AI content on Ray.", no_args_is_help=True, pretty_exceptions_enable=False)
admin_app = typer.Typer(help="Bootstrap tasks that need no API key.", no_args_is_help=True)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
models_app = typer.Typer(help="Model cache and registry.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")
app.add_typer(keys_app, name="keys")
app.add_typer(projects_app, name="projects")
app.add_typer(assets_app, name="assets")
app.add_typer(jobs_app, name="jobs")
app.add_typer(workflows_app, name="workflows")
app.add_typer(db_app, name="db")
app.add_typer(models_app, name="models")


@admin_app.command("create-org")
def create_org(name: str) -> None:
    """Create an organization and print its first admin key."""
    settings = get_settings()
    db = Database.of(settings.db)
    db.upgrade()
    try:
        org, key = create_org_with_admin(db, name)
    except OrgExists as exc:
        raise CliError(str(exc)) from None
    console.print(f"Organization [bold]{org.name}[/] {org.id}. Admin key (shown once):")
    console.print(f"[bold green]{key}[/]")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply Alembic migrations up to head."""
    from farm.db.migrate import current

    settings = get_settings()
    db = Database.of(settings.db)
    db.upgrade()
    console.print(f"Database at revision {current(db.engine)} ({db.engine.url.render_as_string(hide_password=True)})")


@models_app.command("demo")
def models_demo(force: bool = False) -> None:
    """Build the tiny random-weight demo models into the model cache (idempotent)."""
    from serve.demo_models import build_demo_models

    settings = get_settings()
    with console.status("building tiny demo models"):
        built = build_demo_models(settings.models.cache_dir, force=force)
    for name, path in built.items():
        console.print(f"{name}: {path}")


@models_app.command("list")
def models_list() -> None:
    """Served model names and where their weights come from."""
    from serve.demo import load_registry

    settings = get_settings()
    reg = load_registry(settings.models.registry_file, settings.models.cache_dir)
    table([m.model_dump() for m in reg.models.values()], ["name", "kind", "source", "min_replicas", "max_replicas"], title="Models")


@models_app.command("serve-config")
def models_serve_config(
    cluster: Annotated[bool, typer.Option(help="Proxy on every node on 0.0.0.0:8000 (keep it behind an internal service)")] = False,
    port: Annotated[int | None, typer.Option(help="Serve HTTP port (default: FARM_SERVE__HTTP_PORT, or 8000 with --cluster)")] = None,
) -> None:
    """Print the Serve config (`serve deploy` format) of the model registry's applications."""
    from serve.config import CLUSTER_OPTIONS, serve_config, to_yaml
    from serve.demo import load_registry

    settings = get_settings()
    options = dict(CLUSTER_OPTIONS) if cluster else {"host": settings.serve.http_host, "port": settings.serve.http_port}
    if port:
        options["port"] = port
    registry_file = settings.models.registry_file or "the demo models"
    header = f"# Serve config for {registry_file}, made by `farm models serve-config{' --cluster' if cluster else ''}`.\n"
    typer.echo(to_yaml(serve_config(load_registry(settings.models.registry_file, settings.models.cache_dir), **options), header=header), nl=False)


@app.command()
def up(
    ray_address: Annotated[str | None, typer.Option(help="Join this Ray cluster instead of starting a local head")] = None,
    dashboard_url: Annotated[str | None, typer.Option(help="Ray dashboard/Jobs API URL of that cluster")] = None,
    port: Annotated[int | None, typer.Option(help="Control plane port")] = None,
) -> None:
    """Run the embedded farm in the foreground: Ray head + control plane. Ctrl-C stops it."""
    from farm.embedded import EmbeddedFarm, save_credentials

    settings = get_settings()
    if ray_address:
        settings.ray.address = ray_address
        host = ray_address.removeprefix("ray://").rsplit(":", 1)[0]
        # Ray's default dashboard port on the head, unless told otherwise
        settings.ray.dashboard_url = dashboard_url or settings.ray.dashboard_url or f"http://{host}:8265"
    if port:
        settings.api.port = port
    farm = EmbeddedFarm(settings)
    farm.prepare()
    if org_count(farm.db) == 0:
        org, key = create_org_with_admin(farm.db, "default")
        path = save_credentials(settings.home, settings.base_url, key)
        console.print(f"First start: organization [bold]default[/]; admin key (also saved to {path}):")
        console.print(f"[bold green]{key}[/]")
    with console.status("starting Ray"):
        farm.start_ray()
    console.print(f"Ray:           {settings.ray.address}  dashboard {settings.ray.dashboard_url}")
    if farm.owns_ray and settings.serve.deploy and settings.serve.url is None:
        # Set now so the generation routes answer 503 "not reachable" until Serve is up.
        settings.serve.url = f"http://{settings.serve.http_host}:{settings.serve.http_port}"
        threading.Thread(target=_deploy_serve, args=(farm,), name="serve-deploy", daemon=True).start()
        console.print(f"Serve:         deploying the model registry's applications at {settings.serve.url} (internal; starts in the background)")
    elif settings.serve.url:
        console.print(f"Serve:         {settings.serve.url}")
    console.print(f"Control plane: {settings.base_url}  (docs {settings.base_url}/docs, OpenAI API {settings.base_url}/v1)")
    console.print(f"Dashboard:     {settings.base_url}/ui  (sign in with an API key)")
    console.print("Ctrl-C stops the farm.")
    try:
        farm.server().run()
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its clean shutdown
        pass
    finally:
        with console.status("stopping Ray and the dispatcher"):
            farm.stop()
    console.print("Farm stopped.")


@app.command()
def usage(
    start: Annotated[str | None, typer.Option(help="From (ISO 8601, UTC if no zone); default: --since ago")] = None,
    end: Annotated[str | None, typer.Option(help="Until (ISO 8601), exclusive; default: now")] = None,
    since: Annotated[str, typer.Option(help="Window when --start is not given: 30m, 24h, 7d…")] = "24h",
    by: Annotated[list[str] | None, typer.Option(help="Group by project, key, model or endpoint (repeatable, or comma-separated)")] = None,
    project: Annotated[str | None, typer.Option(help="Only this project id")] = None,
    key: Annotated[str | None, typer.Option(help="Only this API key id")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print raw JSON")] = False,
) -> None:
    """Generation usage of your organization: requests, tokens, images, replica-seconds."""
    import json
    from datetime import datetime, timedelta, timezone

    from farm.cli.client import from_settings

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if start is None:
        if len(since) < 2 or since[-1] not in units or not since[:-1].isdigit():
            raise CliError(f"--since {since!r}: expected a number and s, m, h or d (e.g. 24h)")
        until = datetime.fromisoformat(end) if end else datetime.now(timezone.utc)
        start = (until - timedelta(seconds=int(since[:-1]) * units[since[-1]])).isoformat()
    groups = [g.strip() for item in (by or []) for g in item.split(",") if g.strip()]
    params: dict[str, object] = {"start": start, "group_by": groups}
    params.update({k: v for k, v in {"end": end, "project_id": project, "key_id": key}.items() if v})
    report = from_settings(get_settings()).request("GET", "/v1/usage", params=params)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    columns = [*(f"{g}_id" if g in ("project", "key") else g for g in groups), "requests", "prompt_tokens", "completion_tokens", "images", "replica_seconds"]
    rows = [*report["data"], {columns[0]: "total", **report["totals"]}] if groups else [report["totals"]]
    table(rows, columns, title=f"Usage {report['start']} → {report['end']}")


def _deploy_serve(farm: object) -> None:
    from farm.embedded import EmbeddedFarm
    from serve.deploy import DeployError, wait_running

    assert isinstance(farm, EmbeddedFarm)
    try:
        config = farm.deploy_serve()
        names = [str(a["name"]) for a in config["applications"]]  # type: ignore[index]
        wait_running(str(farm.settings.ray.dashboard_url), names, timeout=900)
    except (DeployError, OSError, RuntimeError, ValueError) as exc:
        err.print(f"[red]Serve applications failed:[/] {exc}")
        return
    console.print(f"Serve:         {', '.join(names)} running")


@app.command()
def demo() -> None:
    """The main job on embedded defaults: start the farm, upload a sample video, run the footage workflow on it (shots → restyle → caption)."""
    from farm.demo import run_demo

    run_demo(get_settings())


def main() -> None:
    try:
        app()
    except CliError as exc:
        err.print(f"[red]error:[/] {exc}")
        sys.exit(1)


if __name__ == "__main__":
    main()
