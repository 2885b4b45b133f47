"""The settings as environment variables: what a runner's Ray Job may carry, and what it must find on its node.

Anyone holding the Ray dashboard token can read a job's runtime env, so a
submission carries only public settings and references; secret values (the
database URL with its password, the S3 secret key) reach the runner from a
0600 file the control plane keeps or from the node's own environment.
"""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from pydantic import SecretStr

from farm.settings import Settings, text_list


def is_secret(value: object) -> bool:
    """A `SecretStr`, or a URL that embeds a password (``postgresql://user:pw@host/db``, ``...?password=pw``)."""
    if isinstance(value, SecretStr):
        return True
    if not isinstance(value, str) or "://" not in value:
        return False
    try:
        url = urlsplit(value)
        if url.password is not None:
            return True
        query = parse_qsl(url.query, keep_blank_values=True)
    except ValueError:
        return True  # unparseable: do not guess that it is harmless
    return any(re.search(r"pass|secret|token", key, re.IGNORECASE) for key, _ in query)


def _env_value(value: object) -> str:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    elif isinstance(value, Path):
        value = value.resolve()
    elif isinstance(value, str) and value.startswith("sqlite:///") and not value.startswith("sqlite:////"):
        value = "sqlite:///" + str(Path(value.removeprefix("sqlite:///")).resolve())
    return str(value).lower() if isinstance(value, bool) else str(value)


def _raw(value: object) -> object:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def job_env(settings: Settings) -> tuple[dict[str, str], dict[str, str]]:
    """The settings as FARM_* variables with absolute paths, split into (public, secret).

    Public ones may travel in a Ray Job's runtime env; secret ones (see
    `is_secret`) must reach the runner from its node. A secret still at its
    default value is in neither: the runner's own defaults give it.
    """
    public: dict[str, str] = {"FARM_HOME": str(settings.home.resolve())}
    secret: dict[str, str] = {}
    for group in ("db", "storage", "s3", "ray", "models", "api", "dispatch", "serve", "webhooks", "batch"):
        model = getattr(settings, group)
        for name, field in type(model).model_fields.items():
            value = getattr(model, name)
            if value is None:
                continue
            key = f"FARM_{group.upper()}__{name.upper()}"
            if not is_secret(value):
                public[key] = _env_value(value)
            elif _raw(value) != _raw(field.default):
                secret[key] = _env_value(value)
    if settings.extra_kinds:
        public["FARM_EXTRA_KINDS"] = ",".join(settings.extra_kinds)
    return public, secret


def settings_env(settings: Settings) -> dict[str, str]:
    """Every setting as FARM_* variables, secrets included: for a local child process's environment only."""
    public, secret = job_env(settings)
    return {**public, **secret}


# What a Ray Job submission carries instead of secret values: references.
SECRETS_FILE_ENV = "FARM_RUNNER_SECRETS_FILE"  # path of a file on the node with the secret FARM_* variables
SECRET_NAMES_ENV = "FARM_RUNNER_SECRET_NAMES"  # which FARM_* variables the runner must find on its node
RUNNER_SECRETS_FILE = "runner-secrets.json"

log = logging.getLogger("farm.runner_env")


def runner_secrets_path(settings: Settings) -> Path:
    return settings.home.resolve() / RUNNER_SECRETS_FILE


def write_secrets_file(path: Path, values: Mapping[str, str]) -> Path:
    """Write ``values`` as a JSON object to ``path``, mode 0600 from the first byte, replaced atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(dict(values), fh)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_secrets_file(path: Path) -> dict[str, str]:
    """FARM_* variables from a JSON object or a ``NAME=value`` (.env) file; other names are refused."""
    text = path.read_text()
    if text.lstrip().startswith("{"):
        raw = json.loads(text)
    else:
        from dotenv import dotenv_values

        raw = dotenv_values(path)
    values = {str(k): str(v) for k, v in raw.items() if v is not None}
    if bad := sorted(k for k in values if not k.upper().startswith("FARM_")):
        raise ValueError(f"{path}: only FARM_* settings belong in a runner secrets file, not {bad}")
    if path.stat().st_mode & 0o077:
        log.warning("%s is readable by other users of this node; make it mode 0600", path)
    return values


def runner_settings(environ: MutableMapping[str, str] = os.environ) -> Settings:
    """The runner's settings: its Ray Job's public variables, the node's environment, and the secrets file.

    The file named by FARM_RUNNER_SECRETS_FILE (written for this farm by its
    control plane, or mounted on the node) wins over the node's environment.
    Every name in FARM_RUNNER_SECRET_NAMES must be found in one of them, so a
    runner never falls back to a default database or store.
    """
    path = environ.get(SECRETS_FILE_ENV)
    if path:
        try:
            environ.update(read_secrets_file(Path(path)))
        except FileNotFoundError:  # another node than the control plane's: the node's environment must do
            log.warning("runner secrets file %s is not on this node; using the node's environment", path)
    needed = text_list(environ.get(SECRET_NAMES_ENV, ""))
    present = {k.upper() for k in environ}
    if Path(".env").is_file():
        from dotenv import dotenv_values

        present |= {k.upper() for k in dotenv_values(".env")}
    if missing := [name for name in needed if name.upper() not in present]:
        raise RuntimeError(
            f"secret settings {', '.join(missing)} are not on this node: set them in the node's environment "
            f"(e.g. from a Kubernetes Secret) or in a file named by {SECRETS_FILE_ENV}"
            + (f" ({path} was not found)" if path and not Path(path).is_file() else "")
        )
    return Settings()
