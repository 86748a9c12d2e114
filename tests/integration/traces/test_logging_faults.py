"""The credit store dies while calls are traced (kill -9 of the MCP server's own FerretDB): every call still
answers, records wait up to their bounds and the rest are dropped and counted on /metrics; once the store is
back, new calls are traced again."""

from __future__ import annotations

import re
import time
import uuid

import httpx
import pytest

from config.ports import free_port
from evals.harness import http_server, http_session, token_for
from tests.integration.mongo.test_ai_logging_restart import PrivateFerretDB
from tests.integration.traces.conftest import EXEMPT, eventually

pytestmark = pytest.mark.integration
BOUND = 4
CALLS = 30


def dropped(metrics: str) -> float:
    """Records dropped: the recorder's bounded queue (per reason) and the AI logger's durable queue when full."""
    ours = sum(float(v) for v in re.findall(r'^kredete_trace_observations_dropped_total\{reason="[a-z_]+"\} (\S+)$',
                                            metrics, re.MULTILINE))
    logger = re.search(r"^kredete_ai_log_dropped (\S+)$", metrics, re.MULTILINE)
    return ours + (float(logger.group(1)) if logger else 0.0)


@pytest.fixture
def own_ferretdb(tmp_path, traces_env):
    """A FerretDB of the server's own (same PostgreSQL backend, so it sees the traces dataset's credit store)."""
    server = PrivateFerretDB(tmp_path / "ferretdb", free_port(), free_port())
    server.data_dir.mkdir(parents=True)
    server.start()
    yield server
    server.stop()


async def test_calls_go_on_while_the_credit_store_is_down(traces_env, traces_settings, customers, credit_store,
                                                          own_ferretdb):
    # Its own durable AI-log queue too (the session's server drains the shared one).
    env = {**traces_env, "KREDETE_MONGO_URL": own_ferretdb.url(), "KREDETE_TRACE_QUEUE_SIZE": str(BOUND),
           "KREDETE_QUEUE_DIR": str(own_ferretdb.data_dir.parent / "queues"), "KREDETE_CONNECT_TIMEOUT_S": "1"}
    token = token_for(traces_settings, "customer", user=customers[0], subject=EXEMPT)
    db = credit_store.db
    with http_server(env, log_name="traces-fault-server", timeout_s=300) as url:
        metrics_url = url.removesuffix("/mcp") + "/metrics"
        before = f"fault-{uuid.uuid4().hex[:10]}"
        async with http_session(url, token) as s:
            ok = await s.call_tool("get_wallet_balances", {}, meta={"kredete/conversation_id": before})
            assert not ok.is_error
            assert await eventually(lambda: db.trace_observations.find_one({"trace_id": before})), "not traced"
            own_ferretdb.kill9()
            down = f"fault-{uuid.uuid4().hex[:10]}"
            for _ in range(CALLS):
                res = await s.call_tool("get_wallet_balances", {}, meta={"kredete/conversation_id": down})
                assert not res.is_error, res.content  # logging never fails a call
        async with httpx.AsyncClient(timeout=10) as client:
            lost = dropped((await client.get(metrics_url)).text)
        # The recorder holds BOUND observations (its head waits for the conversation's owner claim, which needs
        # the credit store); everything beyond was dropped and counted, none failed a call.
        assert CALLS - BOUND - 2 <= lost <= CALLS, lost
        own_ferretdb.start()
        # Once the store is back, new calls are traced again. A call made while the recorder still works off the
        # BOUND observations it held (their claims wait for the credit store's breaker to close) may find its
        # queue full and be dropped, counted, like any call of the outage: so a call every 10 s, each with a
        # trace of its own, until one is stored (at most 90 s).
        deadline, traced = time.monotonic() + 90, None
        while traced is None and time.monotonic() < deadline:
            after = f"fault-{uuid.uuid4().hex[:10]}"
            async with http_session(url, token) as s:
                res = await s.call_tool("get_wallet_balances", {}, meta={"kredete/conversation_id": after})
                assert not res.is_error
            traced = await eventually(lambda t=after: db.trace_observations.find_one({"trace_id": t}), timeout=10)
        assert traced, "tracing did not resume within 90 s after the credit store came back"
