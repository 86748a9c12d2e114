"""Prometheus metrics of the guard pipeline: calls by tool and decision, latency, redactions.

Labels carry tool names, decisions and PII kinds only: never principals, arguments or values.
"""

from __future__ import annotations

from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

TOOL_CALLS = Counter("kredete_tool_calls", "MCP tool calls by tool and guard decision", ["tool", "decision"],
                     registry=REGISTRY)
TOOL_SECONDS = Histogram("kredete_tool_call_seconds", "MCP tool call latency inside the server", ["tool"],
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=REGISTRY)
REDACTIONS = Counter("kredete_redactions", "PII spans redacted from tool outputs, by kind", ["kind"],
                     registry=REGISTRY)
AUDIT_FAILURES = Counter("kredete_audit_write_failures", "Audit rows that could not be written", registry=REGISTRY)
DOCUMENT_DOWNLOADS = Counter("kredete_document_downloads", "Requests to the document download route, by outcome "
                             "(served, invalid, expired, not_found, erased, error, unaudited)", ["outcome"],
                             registry=REGISTRY)


def record_call(tool: str, decision: str, seconds: float, redactions: dict[str, int]) -> None:
    # Unknown tool names are caller-controlled: one bucket for all of them keeps the label set bounded.
    TOOL_CALLS.labels(tool=tool, decision=decision).inc()
    TOOL_SECONDS.labels(tool=tool).observe(seconds)
    for kind, n in redactions.items():
        REDACTIONS.labels(kind=kind).inc(n)


def exposition() -> bytes:
    # The default registry holds the store adapters' pool gauges (stores/metrics.py) and process metrics.
    return generate_latest(REGISTRY) + generate_latest(DEFAULT_REGISTRY)
