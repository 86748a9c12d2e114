"""OpenSearch killed (kill -9) under a small concurrent MCP load, then started again.

The MCP server searches a private OpenSearch node holding a copy of the dataset's indices
(`kredete.faults.copies.PrivateOpenSearch`). Only `search_knowledge` needs it: the other tools keep answering,
the search is refused cleanly and audited, and answers again once the node is healthy. What the agent sees is
asserted, not timed (bench/faults.py measures at full size).
"""

from __future__ import annotations

from guards.errors import Unavailable
from kredete.faults.copy_outages import opensearch_outage
from kredete.faults.load import NEEDS, SEARCH

#: What `stores.search.client.SearchUnavailable` ends each of its public messages with.
SEARCH_DOWN_SUFFIX = "; tools that do not need search still work"


async def test_opensearch_killed_other_tools_keep_answering(faults_dataset, tmp_path):
    settings, env = faults_dataset
    r = await opensearch_outage(settings, env, tmp_path, workers=3, per_tool=3, pause_s=0.2)
    print(r.as_dict())
    assert r.breaker_during["indices_copied"], r  # the node served the dataset's indices before the kill
    # Tools that do not need OpenSearch keep answering; the search is refused with the designed message.
    assert all(r.served_during_outage[tool] >= 0.99 for tool in NEEDS), r
    assert r.served_during_outage[SEARCH] < 1.0, r
    # Designed refusals only: search's own ("... no search node answers", "... status red" while the restarted
    # node recovers its shards) and, once the breaker is open, the generic one.
    assert r.refusal_texts, r
    assert all(t == Unavailable.public_message or t.endswith(SEARCH_DOWN_SUFFIX) for t in r.refusal_texts), r
    assert r.leaks == 0, r
    assert r.breaker_during.get("state") in ("open", "half_open"), r
    # The search answers again once the node is healthy (how soon: bench/faults.py); the breaker closed.
    assert r.recovery_s is not None, r
    assert r.breaker_after["state"] == "closed", r
    # Nothing acknowledged is lost; every answer and refusal has its audit row; `kredete db verify-audit` passes.
    assert r.acknowledged > 0 and r.stored == r.acknowledged, r
    assert r.unaudited == 0 and r.audit_chain_ok, r
