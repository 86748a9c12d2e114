#!/usr/bin/env bash
# One command: set everything up and run the MCP server on the local stack, seeded with synthetic data.
#   bash scripts/serve.sh                 # streamable HTTP on 127.0.0.1:8765/mcp (prints a demo token)
#   bash scripts/serve.sh --transport stdio
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
K=.venv/bin/kredete
$K stack up
$K db migrate
$K seed --users "${KREDETE_SEED_USERS:-200}" --seed "${KREDETE_SEED:-42}"
$K ingest
exec $K serve "$@"
