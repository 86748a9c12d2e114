#!/usr/bin/env bash
# Create or update the project's virtualenv (.venv) from pyproject.toml.
# Wheels are cached outside the repo (~/.cache/kredete/uv), so a fresh clone installs in seconds
# on a machine that has installed them once.
set -euo pipefail
cd "$(dirname "$0")/.."
export UV_CACHE_DIR="${UV_CACHE_DIR:-$HOME/.cache/kredete/uv}"
export UV_LINK_MODE="${UV_LINK_MODE:-copy}"
PY="${KREDETE_PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
if ! command -v uv >/dev/null 2>&1; then
  "$PY" -m pip install --quiet --disable-pip-version-check uv
fi
UV="$(command -v uv || echo "$("$PY" -c 'import sys,os;print(os.path.join(os.path.dirname(sys.executable),"uv"))')")"
if [ ! -x .venv/bin/python ]; then
  "$UV" venv --quiet --python "$PY" .venv
fi
stamp=".venv/.kredete-deps-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  "$UV" pip install --quiet --python .venv/bin/python -e ".[dev]"
  rm -f .venv/.kredete-deps-* && touch "$stamp"
fi
