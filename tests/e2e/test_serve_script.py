"""The README's first command, `bash scripts/serve.sh`, run as a user would: set up, seed, index, serve over HTTP.

It runs against its own dataset (database, Mongo database, index and bucket prefix `servescript`) so it
never touches the dev or e2e data, on a free port, and is stopped with its whole process group.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import time

import httpx
import pytest

from config.paths import REPO_ROOT, local_dir
from evals.harness import Dataset, free_port, http_session

DATASET = Dataset(name="servescript", users=12, seed=7)


@pytest.fixture(scope="module")
def served(stack):
    asyncio.run(DATASET._recreate_databases())
    port = free_port()
    log_path = local_dir() / "servescript.log"
    env = {**DATASET.env, "KREDETE_SEED_USERS": str(DATASET.users), "KREDETE_SEED": str(DATASET.seed)}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(["bash", "scripts/serve.sh", "--port", str(port)], cwd=REPO_ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while True:
            if proc.poll() is not None:
                pytest.fail(f"serve.sh exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"serve.sh did not serve within 600 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(1)
        yield port, log_path.read_text()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _demo_token(output: str, role: str) -> str:
    match = re.search(rf"^{role}\s+(\S+\.\S+\.\S+)\s*$", output, re.MULTILINE)
    assert match, f"serve.sh printed no {role} token"
    return match.group(1)


async def test_serve_script_serves_the_seeded_stack_over_http(served):
    port, output = served
    url = f"http://127.0.0.1:{port}/mcp"
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await client.post(url, json={})).status_code == 401  # no token, no data
    token = _demo_token(output, "customer")
    async with http_session(url, token) as session:
        tools = {t.name for t in (await session.list_tools()).tools}
        assert {"search_transactions", "get_credit_report", "search_knowledge"} <= tools
        result = await session.call_tool("search_transactions", {"limit": 5})
        assert not result.is_error
        rows = result.structured_content["transactions"]
        assert rows, "the seeded customer has transactions"
        assert len({r["user_id"] for r in rows}) == 1
        knowledge = await session.call_tool("search_knowledge", {"query": "how do I dispute an error"})
        assert not knowledge.is_error and knowledge.structured_content["passages"]


async def test_compliance_search_of_the_audit_trail_works_and_follows_new_rows(served):
    """The main command builds the audit-log index, and the running server keeps new audit rows searchable."""
    import uuid

    from evals.harness import token_for

    port, output = served
    url = f"http://127.0.0.1:{port}/mcp"
    async with http_session(url, _demo_token(output, "compliance_officer")) as session:
        first = await session.call_tool("search_audit_logs", {"query": "search_transactions", "limit": 5})
        assert not first.is_error, first.content
        assert first.structured_content["source"] == "search_index"
        # A new audit row becomes searchable while the server runs: a call by a subject nobody else uses.
        subject = f"agent-{uuid.uuid4().hex[:12]}"
        async with http_session(url, token_for(DATASET.settings(), "support_agent", subject=subject)) as agent:
            assert not (await agent.call_tool("search_transactions", {"limit": 1})).is_error
        deadline = time.monotonic() + 60
        while True:
            found = await session.call_tool("search_audit_logs", {"query": subject, "limit": 5})
            assert not found.is_error, found.content
            entries = found.structured_content["entries"]
            if any(subject in e["actor_subject"] for e in entries):  # free text comes back delimited
                break
            assert time.monotonic() < deadline, "a new audit row never became searchable"
            await asyncio.sleep(1)
