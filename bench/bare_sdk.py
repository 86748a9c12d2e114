"""The bare MCP SDK: what our call path would cost with none of our code between the transport and a tool.

    python -m bench.bare_sdk --record FILE [--transport stdio|http] [--host 127.0.0.1] [--port 8766] [--auth]

One server, built like `server.py` builds ours with the same `mcp` SDK (MCPServer, the SDK's own argument and
output validation switched off as ours switches them off), serving the tools named in `FILE` (what
`record()` wrote: our server's `tools/list` entries, and one real `tools/call` result of each): same name,
input schema, output schema and annotations, each answering every call with its recorded result. No token,
no guards, no stores, no audit, no trace.

The transports are ours, unchanged: stdio on event-loop pipes (`agent_tools.stdio_pipes`, as `kredete serve`
when a client launched it), and streamable HTTP in stateless mode with JSON responses, a 256 KiB body limit,
uvicorn with one socket write per response (`agent_tools.http_writes`), no access log (as `server.serve_http`).
`--auth` (HTTP) adds the SDK's bearer-token machinery as ours is configured (`AuthSettings`, a token verifier)
with a verifier that accepts any token without checking it: the SDK's share of authentication, not ours.
`bench.tool_calls` runs it beside ours, the floors and the peers in the same interleaved rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase
from mcp_types import CallToolResult, ToolAnnotations


class _Unparsed(ArgModelBase):
    """The arguments the SDK parses: none (as ours, whose guard validates them instead)."""


async def record(session: Any, calls: dict[str, dict[str, Any]], path: Path) -> None:
    """Write to `path` what the bare server serves: `session`'s `tools/list` entries of the tools in `calls` and the
    result of calling each once with its arguments (a real answer of ours: redacted, delimited, budgeted)."""
    listed = {t.name: t for t in (await session.list_tools()).tools}
    out: dict[str, Any] = {}
    for name, arguments in calls.items():
        result = await session.call_tool(name, arguments)
        if result.is_error:
            raise RuntimeError(f"recording {name}: the call failed")
        out[name] = {"tool": listed[name].model_dump(mode="json", by_alias=True, exclude_none=True),
                     "result": result.model_dump(mode="json", by_alias=True, exclude_none=True)}
    await asyncio.to_thread(path.write_text, json.dumps(out))


def _tool(entry: dict[str, Any]) -> Tool:
    spec = entry["tool"]
    answer = CallToolResult.model_validate(entry["result"])

    async def recorded(**arguments: Any) -> CallToolResult:
        return answer

    annotations = spec.get("annotations")
    tool = Tool.from_function(recorded, name=spec["name"], title=spec.get("title"),
                              description=spec.get("description", ""),
                              annotations=ToolAnnotations.model_validate(annotations) if annotations else None)
    tool.parameters = spec["inputSchema"]
    tool.fn_metadata.arg_model = _Unparsed
    tool.fn_metadata.output_model = None
    tool.fn_metadata.output_schema = spec.get("outputSchema")
    return tool


class _AnyToken:
    """A token verifier that accepts every bearer token as it is (the SDK's auth path, none of our checks)."""

    async def verify_token(self, token: str) -> AccessToken | None:
        return AccessToken(token=token, client_id="bench", scopes=[], subject="bench")


def build(recorded: dict[str, Any], *, auth: tuple[str, int] | None = None) -> MCPServer:
    kwargs: dict[str, Any] = {}
    if auth is not None:
        host, port = auth
        kwargs = {"token_verifier": _AnyToken(),
                  "auth": AuthSettings(issuer_url=f"http://{host}:{port}", resource_server_url=f"http://{host}:{port}/mcp",
                                       validate_token_resource=False)}
    return MCPServer("bare-sdk", title="bare MCP SDK", version="0.1.0",
                     tools=[_tool(entry) for entry in recorded.values()], **kwargs)


async def serve_stdio(mcp: MCPServer) -> None:
    from agent_tools.stdio_pipes import stdio_streams

    async with stdio_streams() as (read, write):
        await mcp._lowlevel_server.run(read, write, mcp._lowlevel_server.create_initialization_options())


def serve_http(mcp: MCPServer, host: str, port: int) -> None:
    import uvicorn

    from agent_tools.http_writes import OneWriteH11Protocol

    app = mcp.streamable_http_app(host=host, stateless_http=True, json_response=True,
                                  max_request_body_size=256 * 1024)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on",
                http=OneWriteH11Protocol)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--record", type=Path, required=True, help="the file record() wrote")
    ap.add_argument("--transport", choices=("stdio", "http"), default="stdio")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8766)
    ap.add_argument("--auth", action="store_true", help="HTTP: the SDK's bearer-token machinery, any token accepted")
    args = ap.parse_args()
    mcp = build(json.loads(args.record.read_text()),
                auth=(args.host, args.port) if args.auth and args.transport == "http" else None)
    if args.transport == "stdio":
        asyncio.run(serve_stdio(mcp))
    else:
        serve_http(mcp, args.host, args.port)


if __name__ == "__main__":
    main()
