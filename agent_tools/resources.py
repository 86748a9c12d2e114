"""MCP resources: the output schema of every tool, the grant table and the redaction kinds (no data)."""

from __future__ import annotations

import json
from collections.abc import Iterable

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError

from agent_tools.spec import ToolSpec
from guards.access import KNOWLEDGE_DOC_TYPES
from guards.gate import grants_of
from guards.redaction import PiiKind


def register_resources(mcp: MCPServer, tools: Iterable[ToolSpec]) -> None:
    specs = {s.name: s for s in tools}
    grant_table = grants_of(specs.values())

    @mcp.resource("kredete://schemas/{tool}", name="tool_output_schema", mime_type="application/json",
                  description="JSON schema of what a tool returns.")
    def tool_output_schema(tool: str) -> str:
        spec = specs.get(tool)
        if spec is None:
            raise ResourceNotFoundError(f"unknown tool '{tool}'")
        return json.dumps(spec.output_schema(), indent=2)

    @mcp.resource("kredete://policy/grants", name="grants", mime_type="application/json",
                  description="Which role may call which tool; anything not listed is denied.")
    def grants() -> str:
        return json.dumps({tool: sorted(r.value for r in roles) for tool, roles in grant_table.items()}, indent=2)

    @mcp.resource("kredete://policy/knowledge-doc-types", name="knowledge_doc_types", mime_type="application/json",
                  description="Document types each role may retrieve with search_knowledge.")
    def knowledge_doc_types() -> str:
        return json.dumps({r.value: sorted(t) for r, t in KNOWLEDGE_DOC_TYPES.items()}, indent=2)

    @mcp.resource("kredete://redaction/kinds", name="redaction_kinds", mime_type="application/json",
                  description="PII kinds the redaction layer recognises.")
    def redaction_kinds() -> str:
        return json.dumps(sorted(k.value for k in PiiKind))
