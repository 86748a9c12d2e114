"""`kredete serve`, `kredete token issue`, `kredete redact`."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer

from kredete.commands.common import fail

token_app = typer.Typer(no_args_is_help=True, help="Issue signed bearer tokens for the MCP server.")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("redact")(redact)
    app.command("demo-tokens")(demo_tokens)
    app.add_typer(token_app, name="token")


def serve(
    transport: Annotated[str, typer.Option(help="stdio or http (streamable HTTP)")] = "stdio",
    host: Annotated[str, typer.Option(help="HTTP bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port")] = 8765,
    workers: Annotated[int, typer.Option(min=1, max=64, help="HTTP worker processes on the one port (stateless "
                                                             "sessions: any worker answers any request)")] = 1,
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
        from kredete.stack.prometheus import announce_metrics

        with announce_metrics(host, port, job="mcp"):  # the local Prometheus scrapes its /metrics meanwhile
            server.serve_http(host, port, workers=workers)
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
    from guards.bearer import issue_token

    try:
        token = issue_token(role, subject or (f"user:{user}" if user else f"{role}-1"), user_id=user, ttl_s=ttl)
    except ValueError as exc:
        fail(str(exc))
    typer.echo(token)


def redact(
    role: Annotated[str | None, typer.Option(help="Mask as this role's policy does (default: mask all)")] = None,
) -> None:
    """Redact PII in text read on stdin; print JSON {text, findings}."""
    from guards.redaction import redact_stream

    redact_stream(sys.stdin, sys.stdout, role)


def demo_tokens() -> None:
    """Print one token per role for trying the server (customer: the first seeded user)."""
    import asyncio

    from config.settings import resolve
    from guards.bearer import issue_token
    from stores.registry import connect

    async def first_ids() -> tuple[str | None, str | None]:
        stores = await connect(("postgres",))
        try:
            async with stores.postgres.connection() as conn:
                user = await conn.fetchval("SELECT user_id FROM wallets WHERE user_id IS NOT NULL ORDER BY user_id "
                                           "LIMIT 1")
                coach = await conn.fetchval("SELECT coach_subject FROM coach_assignments ORDER BY 1 LIMIT 1")
            return (str(user) if user else None), coach
        finally:
            await stores.close()

    user, coach = asyncio.run(first_ids())
    s = resolve()
    rows = [("customer", f"user:{user}", user), ("support_agent", "agent-1", None),
            ("credit_coach", coach or "coach-1", None), ("risk_analyst", "risk-1", None),
            ("compliance_officer", "compliance-1", None)]
    for role, subject, uid in rows:
        if role == "customer" and uid is None:
            continue
        typer.echo(f"{role:<19} {issue_token(role, subject, user_id=uid, ttl_s=8 * 3600, settings=s)}")
