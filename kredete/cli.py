"""`kredete` command line: local stack, database, seeding, MCP server, tokens, ingestion, evals."""

from __future__ import annotations

import importlib
import pkgutil

import typer

import kredete.commands

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__, pretty_exceptions_enable=False)

# Each command module registers itself, so adding a command group touches no shared file.
for _mod in sorted(pkgutil.iter_modules(kredete.commands.__path__), key=lambda m: m.name):
    if _mod.name == "common":
        continue
    module = importlib.import_module(f"kredete.commands.{_mod.name}")
    module.register(app)


def main() -> None:
    """Entry point: a configuration problem (a missing or incoherent setting) is one line, not a traceback."""
    from config.errors import ConfigError

    try:
        app(standalone_mode=True)
    except ConfigError as exc:
        from kredete.commands.common import err

        # typer.Exit (what `fail` raises) is only handled inside the app: out here it printed a traceback.
        err.print(f"[red]error:[/] {exc}")
        raise SystemExit(1) from None
