"""Peer MCP servers for `bench.tool_calls`, provisioned once into the cache (a bench setup step, never in CI).

    python -m bench.peers setup        # install (or check) both peers; prints and stores what happened

* `mongodb-mcp-server` (npm registry) into `~/.cache/kredete/peers/mongodb-mcp-server-<version>`.
* Crystal DBA's `postgres-mcp` (PyPI) into its own virtualenv made with Python 3.12
  (`~/.cache/kredete/peers/postgres-mcp-<version>`), with an MCP SDK below 2 (what it is written against).

Each step's exact command and outcome go to `peers/status.json` (and into the benchmark's results): a peer that
cannot be installed is recorded with its command and error, and the benchmark runs without it.

postgres-mcp 0.3.0 pins `pglast==7.2.0`, which PyPI no longer serves (its 7.x line now starts at 7.20): the
plain install fails with that error (recorded), and the step retries with uv's `--override pglast==7.20`
(the same major line: PostgreSQL 17's parser), recorded as a deviation from the package's own pins.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from config.paths import cache_dir

MONGODB_MCP_VERSION = "3.0.4"  # what the npm registry serves as `latest`
POSTGRES_MCP_VERSION = "0.3.0"  # what PyPI serves as the newest
PYTHON_312 = "/root/.pyenv/versions/3.12.1/bin/python"
#: postgres-mcp's pin that PyPI no longer serves, and the release of the same line used instead.
PGLAST_OVERRIDE = "pglast==7.20"


def home() -> Path:
    return cache_dir() / "peers"


def mongodb_mcp_binary() -> Path:
    return home() / f"mongodb-mcp-server-{MONGODB_MCP_VERSION}" / "node_modules" / ".bin" / "mongodb-mcp-server"


def postgres_mcp_binary() -> Path:
    return home() / f"postgres-mcp-{POSTGRES_MCP_VERSION}" / "bin" / "postgres-mcp"


def _run(cmd: list[str], timeout: int = 900) -> dict[str, Any]:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"command": " ".join(cmd), "ok": False, "error": f"{type(exc).__name__}: {exc}"}
    out = {"command": " ".join(cmd), "ok": proc.returncode == 0}
    if proc.returncode != 0:
        out["error"] = (proc.stderr or proc.stdout).strip()[-3000:]
    return out


def setup_mongodb_mcp() -> dict[str, Any]:
    binary = mongodb_mcp_binary()
    if binary.exists():
        return {"ok": True, "version": MONGODB_MCP_VERSION, "binary": str(binary), "steps": ["cached"]}
    npm = shutil.which("npm")
    if npm is None:
        return {"ok": False, "version": MONGODB_MCP_VERSION, "steps": [{"command": "npm", "ok": False,
                                                                         "error": "npm is not installed"}]}
    prefix = binary.parent.parent.parent
    prefix.mkdir(parents=True, exist_ok=True)
    step = _run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(prefix),
                 f"mongodb-mcp-server@{MONGODB_MCP_VERSION}"])
    return {"ok": step["ok"] and binary.exists(), "version": MONGODB_MCP_VERSION, "binary": str(binary),
            "steps": [step]}


def setup_postgres_mcp() -> dict[str, Any]:
    binary = postgres_mcp_binary()
    info: dict[str, Any] = {"version": POSTGRES_MCP_VERSION, "binary": str(binary), "python": PYTHON_312}
    if binary.exists():
        return {**info, "ok": True, "steps": ["cached"],
                "deviation": f"installed with --override {PGLAST_OVERRIDE} (the pinned pglast==7.2.0 is gone "
                             "from PyPI)"}
    uv = shutil.which("uv")
    if uv is None or not Path(PYTHON_312).exists():
        return {**info, "ok": False, "steps": [{"command": "uv venv -p " + PYTHON_312, "ok": False,
                                                "error": "uv or Python 3.12 is missing"}]}
    venv = binary.parent.parent
    steps = [_run([uv, "venv", "--allow-existing", "-p", PYTHON_312, str(venv)])]
    if not steps[0]["ok"]:
        return {**info, "ok": False, "steps": steps}
    py = str(venv / "bin" / "python")
    wanted = [f"postgres-mcp=={POSTGRES_MCP_VERSION}", "mcp<2"]
    steps.append(_run([uv, "pip", "install", "--python", py, *wanted]))
    if not steps[-1]["ok"]:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write(PGLAST_OVERRIDE + "\n")
        steps.append(_run([uv, "pip", "install", "--python", py, *wanted, "--override", f.name]))
        steps[-1]["override"] = PGLAST_OVERRIDE
        Path(f.name).unlink(missing_ok=True)
        info["deviation"] = (f"installed with --override {PGLAST_OVERRIDE}: the pinned pglast==7.2.0 is not on "
                             "PyPI any more")
    return {**info, "ok": steps[-1]["ok"] and binary.exists(), "steps": steps}


def setup() -> dict[str, Any]:
    """Install both peers (or find them cached); the outcome is stored next to them and returned."""
    home().mkdir(parents=True, exist_ok=True)
    before = status()
    status_now = {"mongodb-mcp-server": setup_mongodb_mcp(), "postgres-mcp": setup_postgres_mcp()}
    for name, st in status_now.items():  # a cached peer keeps the record of how it was installed
        if st.get("steps") == ["cached"] and before.get(name, {}).get("ok"):
            status_now[name] = before[name]
    (home() / "status.json").write_text(json.dumps(status_now, indent=2) + "\n")
    return status_now


def status() -> dict[str, Any]:
    """What the last setup recorded (empty when it never ran)."""
    path = home() / "status.json"
    return json.loads(path.read_text()) if path.exists() else {}


def main() -> None:
    if sys.argv[1:] != ["setup"]:
        raise SystemExit("usage: python -m bench.peers setup")
    result = setup()
    print(json.dumps(result, indent=2))
    if not all(p["ok"] for p in result.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
