"""OpenTelemetry names of a stored observation: the GenAI semantic conventions (`gen_ai.*`) and the MCP,
end-user and error names, taken from the `opentelemetry-semantic-conventions` package; `kredete.*` only where
the conventions have no name. `attributes(obs)` is what `kredete traces show --attributes` prints and what
the optional OTLP export sends.
"""

from __future__ import annotations

import json
from typing import Any

from opentelemetry.semconv._incubating.attributes import enduser_attributes as enduser
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv._incubating.attributes import mcp_attributes as mcp
from opentelemetry.semconv.attributes import error_attributes as error

OPERATION = {
    "tool_call": gen_ai.GenAiOperationNameValues.EXECUTE_TOOL.value,
    "retrieval": gen_ai.GenAiOperationNameValues.RETRIEVAL.value,
    "turn": gen_ai.GenAiOperationNameValues.CHAT.value,
    "prompt": "prompts/get",
    "resource_read": "resources/read",
}
METHOD = {"tool_call": "tools/call", "prompt": "prompts/get", "resource_read": "resources/read"}


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


def attributes(obs: dict[str, Any]) -> dict[str, Any]:
    """Flat span attributes of one observation document (redacted values only: that is all it holds)."""
    kind = obs["kind"]
    principal = obs.get("principal") or {}
    meta = obs.get("metadata") or {}
    who = enduser.ENDUSER_PSEUDO_ID if principal.get("role") == "customer" else enduser.ENDUSER_ID
    out: dict[str, Any] = {
        gen_ai.GEN_AI_OPERATION_NAME: OPERATION.get(kind, kind),
        gen_ai.GEN_AI_CONVERSATION_ID: obs["trace_id"],
        who: principal.get("id", ""),
        "kredete.principal.role": principal.get("role", ""),
        "kredete.observation.kind": kind,
        "kredete.status": obs.get("status", ""),
        "kredete.latency_ms": float(obs.get("latency_ms") or 0.0),
        "kredete.tokens": int(obs.get("tokens") or 0),
    }
    if kind in METHOD:
        out[mcp.MCP_METHOD_NAME] = METHOD[kind]
    if kind == "tool_call":
        out[gen_ai.GEN_AI_TOOL_NAME] = obs["name"]
        out[gen_ai.GEN_AI_TOOL_CALL_ID] = obs["_id"]
        out[gen_ai.GEN_AI_TOOL_CALL_ARGUMENTS] = _json(obs.get("arguments") or {})
        if obs.get("output_stored"):
            out[gen_ai.GEN_AI_TOOL_CALL_RESULT] = _json(obs.get("output"))
    elif kind == "prompt":
        out[gen_ai.GEN_AI_PROMPT_NAME] = obs["name"]
        for key in ("prompt_version", "template_sha256"):
            if meta.get(key):
                out[f"kredete.{key}"] = meta[key]
    elif kind == "retrieval":
        out[gen_ai.GEN_AI_RETRIEVAL_QUERY_TEXT] = (obs.get("arguments") or {}).get("query", "")
        out[gen_ai.GEN_AI_RETRIEVAL_DOCUMENTS] = _json([{"id": r["id"], "score": r["score"]}
                                                         for r in obs.get("results") or []])
        if meta.get("index"):
            out[gen_ai.GEN_AI_DATA_SOURCE_ID] = meta["index"]
    elif kind == "turn":
        role = obs.get("name")
        out[gen_ai.GEN_AI_USAGE_INPUT_TOKENS if role == "user" else gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS] = int(
            obs.get("tokens") or 0)
    elif kind == "resource_read":
        out[mcp.MCP_RESOURCE_URI] = obs["name"]
    if obs.get("status") in ("denied", "error", "rate_limited"):
        out[error.ERROR_TYPE] = obs["status"]
    if obs.get("redactions"):
        for pii_kind, n in sorted(obs["redactions"].items()):
            out[f"kredete.redactions.{pii_kind}"] = int(n)
    if obs.get("output_digest"):
        out["kredete.output.bytes"] = int(obs.get("output_bytes") or 0)
        out["kredete.output.digest"] = obs["output_digest"]
    return out
