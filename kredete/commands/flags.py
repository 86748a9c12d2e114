"""`kredete flags list|set|delete|eval`: feature flags in Redis, read by the OpenFeature provider."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer

from kredete.commands.common import fail

flags_app = typer.Typer(no_args_is_help=True, help="Feature flags (OpenFeature, stored in Redis): list, set, evaluate.")


def register(app: typer.Typer) -> None:
    app.add_typer(flags_app, name="flags")


async def _with_store(fn: Any) -> Any:
    from stores.cache.flags import FlagStore
    from stores.registry import connect

    stores = await connect(("cache",))
    try:
        return await fn(FlagStore(stores.cache))
    finally:
        await stores.close()


def _run(coro: Any) -> Any:
    from stores.errors import StoreError

    try:
        return asyncio.run(coro)
    except StoreError as exc:
        fail(str(exc))


@flags_app.command("list")
def list_flags(as_json: Annotated[bool, typer.Option("--json", help="print the definitions as JSON")] = False) -> None:
    """Every stored flag, and the flags the code reads that are not set (they run on their code default)."""
    from rich.console import Console
    from rich.table import Table

    from services.flags import KNOWN_FLAGS

    stored = _run(_with_store(lambda fs: fs.all()))
    if as_json:
        typer.echo(json.dumps(stored, indent=2, sort_keys=True))
        return
    table = Table(title="feature flags")
    for col in ("flag", "kind", "state", "default", "rules", "rollout", "description"):
        table.add_column(col)
    for key in sorted(set(stored) | set(KNOWN_FLAGS)):
        d = stored.get(key)
        if d is None:
            kind, default, _, desc = KNOWN_FLAGS[key]
            table.add_row(key, kind, "[dim]not set[/]", f"{default!r} (code)", "", "", desc)
            continue
        state = "[green]on[/]" if d.get("enabled", True) else "[red]killed[/]"
        rules = "\n".join(f"{r['attribute']} in {','.join(r['in'])} → {r['variant']}" for r in d.get("rules", []))
        rollout = "\n".join(f"{s['percent']:g}% → {s['variant']}" for s in d.get("rollout", []))
        shown = f"{d.get('default')} = {d.get('variants', {}).get(d.get('default'))!r}"
        table.add_row(key, d.get("kind", "?"), state, shown, rules, rollout, d.get("description", ""))
    Console(width=160).print(table)


def _parse_rule(text: str) -> dict[str, Any]:
    try:
        cond, variant = text.rsplit(":", 1)
        attribute, values = cond.split("=", 1)
    except ValueError:
        fail(f"--rule {text!r}: expected ATTRIBUTE=V1,V2:VARIANT (e.g. corridor=US-NG,GB-NG:knn)")
    return {"attribute": attribute.strip(), "in": [v.strip() for v in values.split(",") if v.strip()],
            "variant": variant.strip()}


def _parse_split(text: str) -> dict[str, Any]:
    try:
        variant, percent = text.split("=", 1)
        return {"variant": variant.strip(), "percent": float(percent)}
    except ValueError:
        fail(f"--rollout {text!r}: expected VARIANT=PERCENT (e.g. on=25)")


@flags_app.command("set")
def set_flag(
    key: Annotated[str, typer.Argument(help="flag key, e.g. search_knowledge.default_mode")],
    definition: Annotated[str | None, typer.Option("--json", help="the whole definition as JSON")] = None,
    default: Annotated[str | None, typer.Option(help="variant served when no rule or rollout matches")] = None,
    kill: Annotated[bool, typer.Option("--kill", help="kill switch: serve the off variant to everyone")] = False,
    revive: Annotated[bool, typer.Option("--revive", help="undo --kill")] = False,
    off_variant: Annotated[str | None, typer.Option(help="variant served while killed")] = None,
    rule: Annotated[list[str] | None, typer.Option(help="ATTRIBUTE=V1,V2:VARIANT (replaces the rules; repeat)")] = None,
    rollout: Annotated[list[str] | None, typer.Option(help="VARIANT=PERCENT, sticky per user (replaces; repeat)")]
    = None,
    clear_rules: Annotated[bool, typer.Option("--clear-rules")] = False,
    clear_rollout: Annotated[bool, typer.Option("--clear-rollout")] = False,
) -> None:
    """Create or change a flag. A known flag starts from its template (variants and code default)."""
    from pydantic import ValidationError

    from services.flags import KNOWN_FLAGS, FlagDefinition, template

    async def apply(fs) -> dict:
        current = (await fs.all()).get(key)
        if definition is not None:
            try:
                body = json.loads(definition)
            except ValueError as exc:
                fail(f"--json is not valid JSON ({exc})")
        elif current is not None:
            body = dict(current)
        elif key in KNOWN_FLAGS:
            body = template(key)
        else:
            fail(f"unknown flag {key!r}: give its whole definition with --json (see `kredete flags list`)")
        if default is not None:
            body["default"] = default
        if kill or revive:
            body["enabled"] = not kill
        if off_variant is not None:
            body["off_variant"] = off_variant
        if clear_rules:
            body["rules"] = []
        if rule:
            body["rules"] = [_parse_rule(r) for r in rule]
        if clear_rollout:
            body["rollout"] = []
        if rollout:
            body["rollout"] = [_parse_split(s) for s in rollout]
        try:
            checked = FlagDefinition.model_validate(body)
        except ValidationError as exc:
            fail("invalid flag: " + "; ".join(f"{'.'.join(map(str, e['loc'])) or 'flag'}: {e['msg']}"
                                              for e in exc.errors()))
        stored = checked.model_dump(by_alias=True, exclude_defaults=False)
        await fs.put(key, stored)
        return stored

    stored = _run(_with_store(apply))
    typer.echo(json.dumps({key: stored}, indent=2))


@flags_app.command("delete")
def delete_flag(key: str) -> None:
    """Remove a stored flag: callers get their code default again."""
    if not _run(_with_store(lambda fs: fs.delete(key))):
        fail(f"no stored flag {key!r}")


@flags_app.command("eval")
def eval_flag(
    key: str,
    user: Annotated[str | None, typer.Option(help="targeting key: a user id or staff subject")] = None,
    role: Annotated[str | None, typer.Option()] = None,
    corridor: Annotated[str | None, typer.Option()] = None,
) -> None:
    """What the OpenFeature client returns for this context (value, variant, reason)."""
    from services.flags import KNOWN_FLAGS, RedisFlagProvider, context_for

    async def evaluate(fs) -> dict:
        provider = RedisFlagProvider(fs.store)
        await provider.refresh()
        kind, default, _, _ = KNOWN_FLAGS.get(key, ("string", None, {}, ""))
        flag = provider.flags.get(key)
        kind = flag.kind if flag else kind
        ctx = context_for(user, role=role, corridor=corridor)
        try:
            d = getattr(provider, f"resolve_{kind}_details")(key, default, ctx)
            return {"flag": key, "value": d.value, "variant": d.variant, "reason": str(d.reason)}
        except Exception as exc:  # the SDK would serve the caller's default; say why
            return {"flag": key, "value": default, "variant": None, "reason": f"default ({exc})"}

    typer.echo(json.dumps(_run(_with_store(evaluate)), indent=2, default=str))
