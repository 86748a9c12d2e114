"""`kredete serve`, `kredete token issue`, `kredete redact`."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated

import typer

from kredete.commands.common import fail

token_app = typer.Typer(no_args_is_help=True, help="Issue signed bearer tokens for the MCP server.")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("redact")(redact)
    app.add_typer(token_app, name="token")


def serve(
    transport: Annotated[str, typer.Option(help="stdio or http (streamable HTTP)")] = "stdio",
    host: Annotated[str, typer.Option(help="HTTP bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port")] = 8765,
) -> None:
    """Run the MCP server. stdio: principal from KREDETE_TOKEN. http: Authorization: Bearer <token>."""
    import server

    server._quiet_logging()
    if transport == "stdio":
        asyncio.run(server.serve_stdio())
    elif transport == "http":
        from kredete.commands.common import err

        err.print(f"MCP server (streamable HTTP) on http://{host}:{port}/mcp — send `Authorization: Bearer <token>`"
                  " (make one with `kredete token issue --role customer --user <uuid>`)")
        asyncio.run(server.serve_http(host, port))
    else:
        fail("transport must be stdio or http")


@token_app.command("issue")
def token_issue(
    role: Annotated[str, typer.Option(help="customer, support_agent, credit_coach, risk_analyst, compliance_officer")],
    user: Annotated[str | None, typer.Option(help="User id (required for customer)")] = None,
    subject: Annotated[str | None, typer.Option(help="Subject (defaults to role or user)")] = None,
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds")] = 3600,
) -> None:
    """Print a signed token binding role, subject and (customers) user id."""
    from guards.tokens import issue_token

    try:
        token = issue_token(role, subject or (f"user:{user}" if user else f"{role}-1"), user_id=user, ttl_s=ttl)
    except ValueError as exc:
        fail(str(exc))
    typer.echo(token)


def redact() -> None:
    """Redact PII in text read on stdin; print JSON {text, findings}."""
    from guards.redaction import redact as do_redact

    text = sys.stdin.read()
    result = do_redact(text)
    typer.echo(json.dumps(result.model_dump(mode="json"), ensure_ascii=False))
