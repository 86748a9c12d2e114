#!/usr/bin/env bash
# One command: set everything up and run the MCP server on the local stack, seeded with synthetic data.
#   bash scripts/serve.sh                      # streamable HTTP on 127.0.0.1:8765/mcp (prints demo tokens)
#   bash scripts/serve.sh --transport stdio    # stdio (setup output goes to stderr; stdout is the protocol)
set -euo pipefail
cd "$(dirname "$0")/.."
# Some environments set PYTHONDONTWRITEBYTECODE, and uv installs no bytecode: then every process (each CLI
# call, each server) compiles torch, pydantic & co. from source again. Measured under load on a 2-core
# machine: `import server` 15 s without bytecode, 6.5 s with; `import sentence_transformers` 45 s vs 17 s.
unset PYTHONDONTWRITEBYTECODE
exec 3>&1 1>&2   # everything before the server writes to stderr
bash scripts/bootstrap.sh
K=.venv/bin/kredete
$K stack up
$K s3 setup >/dev/null   # principals, tiers, buckets, replication (the access log needs its shipper user)
$K db migrate
$K seed --users "${KREDETE_SEED_USERS:-200}" --seed "${KREDETE_SEED:-42}"
$K ingest --reembed-stale   # the knowledge index (search_knowledge); re-embedded if the encoder changed
$K search sync audit-logs   # the audit-log index (search_audit_logs' query); the server keeps it in sync
$K demo-tokens || true
exec 1>&3 3>&-
case " $* " in
  *" --transport"*) exec $K serve "$@" ;;
  *) exec $K serve --transport http "$@" ;;   # the default of this script: streamable HTTP
esac
