"""The MCP Inspector's CLI mode (from the npm registry) drives the stdio server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from config.paths import REPO_ROOT, cache_dir
from tests.e2e.conftest import E2E_ENV, token_for

INSPECTOR_VERSION = "2.12.0"


@pytest.fixture(scope="session")
def inspector() -> Path:
    """`mcp-inspector`, installed once into the cache (npm registry), pinned."""
    if not shutil.which("npm"):
        pytest.skip("npm is not installed: the Inspector comes from the npm registry")
    home = cache_dir() / f"npm-inspector-{INSPECTOR_VERSION}"
    binary = home / "node_modules" / ".bin" / "mcp-inspector"
    if not binary.exists():
        home.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(home),
                        f"@modelcontextprotocol/inspector@{INSPECTOR_VERSION}"], check=True, capture_output=True,
                       timeout=600)
    return binary


def _inspect(binary: Path, token: str, *args: str, expect_error: bool = False) -> dict:
    # The Inspector starts the server with a minimal environment: pass the project's settings on.
    settings_env = {k: v for k, v in os.environ.items() if k.startswith("KREDETE_")}
    env = {**settings_env, **E2E_ENV, "KREDETE_TOKEN": token}
    env_args = [x for k, v in env.items() for x in ("-e", f"{k}={v}")]
    # A generous connect timeout: a busy CI machine can take longer than the Inspector's 15 s to start Python.
    proc = subprocess.run([str(binary), "--cli", "--connect-timeout", "120000", sys.executable,
                           str(REPO_ROOT / "server.py"), *env_args, *args],
                          capture_output=True, text=True, timeout=180, check=False)
    # The Inspector exits non-zero when a tool reports isError, and still prints the result.
    assert (proc.returncode != 0) == expect_error, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_inspector_cli_lists_tools_and_calls_one(inspector, e2e_env, e2e_settings, facts):
    token = token_for(e2e_settings, "customer", user=facts.alice)
    listed = _inspect(inspector, token, "--method", "tools/list")
    names = {t["name"] for t in listed["tools"]}
    assert {"search_transactions", "get_credit_report", "search_knowledge"} <= names
    called = _inspect(inspector, token, "--method", "tools/call", "--tool-name", "get_wallet_balances")
    assert called["isError"] is False
    assert called["structuredContent"]["user_id"] == str(facts.alice)
    denied = _inspect(inspector, token, "--method", "tools/call", "--tool-name", "search_audit_logs",
                      expect_error=True)
    assert denied["isError"] is True and "may not call" in denied["content"][0]["text"]
