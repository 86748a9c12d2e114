"""`kredete traces list|show`: AI traces of the MCP server (conversations and MCP sessions), redacted values only."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from kredete.commands.common import fail, with_credit_store

traces_app = typer.Typer(no_args_is_help=True, help="AI traces: conversations, their calls, retrievals and scores.")


def register(app: typer.Typer) -> None:
    app.add_typer(traces_app, name="traces")


def _with_repo(fn):
    from stores.mongo.traces import TraceRepository

    return with_credit_store(lambda store: fn(TraceRepository(store)))


def _since(value: str | None) -> datetime | None:
    if not value:
        return None
    units = {"m": 60, "h": 3600, "d": 86400}
    if value[-1:] in units and value[:-1].isdigit():
        return datetime.now(UTC) - timedelta(seconds=int(value[:-1]) * units[value[-1]])
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        fail(f"--since: not an ISO time or a duration like 24h/7d: {value!r}")
    return at if at.tzinfo else at.replace(tzinfo=UTC)


@traces_app.command("list")
def traces_list(
    limit: Annotated[int, typer.Option(help="How many traces, newest first.")] = 20,
    since: Annotated[str | None, typer.Option(help="ISO time or a duration (24h, 7d).")] = None,
    principal: Annotated[str | None, typer.Option(help="Only this principal id (a customer's pseudonym or a "
                                                       "staff subject).")] = None,
) -> None:
    """Recent traces with their observation and score counts."""
    from rich.console import Console
    from rich.table import Table

    rows = asyncio.run(_with_repo(lambda r: r.recent(limit=limit, since=_since(since), principal_id=principal)))
    t = Table(title=f"traces ({len(rows)})")
    for col in ("trace", "principal", "origin", "started", "last", "observations", "statuses", "scores"):
        t.add_column(col)
    for s in rows:
        t.add_row(s.trace_id, f"{s.principal.get('role', '')} {s.principal.get('id', '')}", s.origin,
                  _time(s.created_at), _time(s.last_at), str(s.observations),
                  " ".join(f"{k}:{v}" for k, v in sorted(s.statuses.items())), str(s.scores))
    Console().print(t)


@traces_app.command("show")
def traces_show(
    trace_id: Annotated[str, typer.Argument(help="The trace (conversation) id.")],
    token: Annotated[str | None, typer.Option(help="Show it only if this bearer token's principal owns the trace "
                                                   "(default: $KREDETE_TOKEN when set; operators omit both).")] = None,
    attributes: Annotated[bool, typer.Option("--attributes", help="Print each observation's OpenTelemetry "
                                                                  "attributes (gen_ai.*) too.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The trace as JSON instead of a tree.")] = False,
) -> None:
    """One trace as a tree: turns, the calls under them, retrievals with their ranked results, scores.
    Only redacted values are stored, so only redacted values are shown."""
    from rich.console import Console

    from stores.errors import NotFound

    token = token or os.environ.get("KREDETE_TOKEN")

    async def load(repo):
        if token:
            from guards.bearer import verify_token
            from guards.errors import Unauthenticated
            from guards.tracing import owner_of

            try:
                principal = verify_token(token)
            except Unauthenticated as exc:
                fail(exc.message)
            if await repo.owner(trace_id) != owner_of(principal):
                # Another principal's trace and a trace that does not exist are not told apart.
                fail("no such trace in your scope")
        try:
            return await repo.tree(trace_id)
        except NotFound:
            fail("no such trace")

    tree = asyncio.run(_with_repo(load))
    if as_json:
        print(json.dumps({"trace": tree.trace, "observations": tree.observations, "scores": tree.scores},
                         indent=2, default=str))
        return
    Console().print(render(tree, attributes=attributes))


def _time(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, datetime) else ""


def _short(value: Any, limit: int = 90) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _label(o: dict[str, Any]) -> str:
    from rich.markup import escape

    colour = {"allowed": "green", "ok": "green", "denied": "yellow", "rate_limited": "yellow"}.get(o["status"], "red")
    head = f"[bold]{o['kind']}[/] {escape(o['name'])} [{colour}]{o['status']}[/]"
    facts = [f"{o.get('latency_ms', 0):.1f} ms", f"{o.get('tokens', 0)} tokens"]
    if o.get("redactions"):
        facts.append("redacted " + ", ".join(f"{k}×{n}" for k, n in sorted(o["redactions"].items())))
    if o.get("metadata", {}).get("prompt_version"):
        facts.append(f"v{o['metadata']['prompt_version']} sha256 {o['metadata']['template_sha256'][:12]}")
    if o.get("metadata", {}).get("refused_trace"):
        facts.append("[yellow]named another principal's trace: logged here[/]")
    lines = [f"{head}  [dim]{' · '.join(facts)} · {o['_id'][:12]}[/]"]
    if o.get("reason"):
        lines.append(f"reason: {escape(_short(o['reason']))}")
    if o["kind"] == "turn":
        lines.append(f"«{escape(_short(o.get('output') or '', 200))}»")
    else:
        if o.get("arguments"):
            lines.append(f"args {escape(_short(o['arguments']))}  [dim]digest {str(o.get('args_digest'))[:12]}[/]")
        if o.get("results"):
            lines.append("results " + ", ".join(f"#{r['rank']} {escape(r['id'])} {r['score']:.3f}"
                                                for r in o["results"][:5]))
        elif o.get("output_stored"):
            lines.append(f"output {escape(_short(o.get('output')))}")
        elif o.get("output_digest"):
            lines.append(f"output {o.get('output_bytes', 0)} bytes, digest {o['output_digest'][:12]} (not stored)")
    return "\n".join(lines)


def render(tree: Any, *, attributes: bool = False) -> Any:
    """A rich Tree of the trace (what `traces show` prints)."""
    from rich.markup import escape
    from rich.tree import Tree

    from guards.trace_attributes import attributes as otel

    t = tree.trace
    p = t.get("principal") or {}
    scores = tree.scores_of(None)
    title = (f"[bold]trace {escape(t['_id'])}[/]  {p.get('role', '')} {p.get('id', '')} · {t.get('origin', '')} · "
             f"{len(tree.observations)} observations · started {_time(t.get('created_at'))}")
    root = Tree(title)
    for s in scores:
        root.add(_score(s))
    children = tree.children()

    def add(node: Any, obs: dict[str, Any]) -> None:
        branch = node.add(_label(obs))
        for s in tree.scores_of(obs["_id"]):
            branch.add(_score(s))
        if attributes:
            for k, v in otel(obs).items():
                branch.add(f"[dim]{escape(k)} = {escape(_short(v, 120))}[/]")
        for child in children.get(obs["_id"], []):
            add(branch, child)

    for obs in children.get(None, []):
        add(root, obs)
    return root


def _score(s: dict[str, Any]) -> str:
    from rich.markup import escape

    comment = f" «{escape(_short(s['comment'], 120))}»" if s.get("comment") else ""
    return f"[magenta]score {s['score']:g}[/] {s.get('label') or ''}{comment}"


__all__ = ["register", "render", "traces_app"]
