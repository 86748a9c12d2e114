#!/usr/bin/env bash
# One command: set everything up and run the whole test suite against real servers.
# The pytest session starts the local stack itself and stops what it started.
set -uo pipefail
cd "$(dirname "$0")/.."
# Some environments set PYTHONDONTWRITEBYTECODE, and uv installs no bytecode: then every process (each CLI
# call, each server) compiles torch, pydantic & co. from source again. Measured under load on a 2-core
# machine: `import server` 15 s without bytecode, 6.5 s with; `import sentence_transformers` 45 s vs 17 s; the
# e2e dataset (six CLI processes) 223 s vs 112 s, interleaved under the same load.
unset PYTHONDONTWRITEBYTECODE
bash scripts/bootstrap.sh || exit 1
.venv/bin/ruff check . || exit 1
# a full run needs several GB for server data (a machine out of disk fails in confusing ways): say what there was
echo "disk before the tests: $(df -h --output=avail . | tail -1 | tr -d ' ') free" >&2
.venv/bin/python -m pytest -p no:cacheprovider -ra "$@"
rc=$?
echo "disk after the tests: $(df -h --output=avail . | tail -1 | tr -d ' ') free" >&2
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing on purpose" >&2
  exit 1
fi
exit "$rc"
