"""The agent tool surface: every `ToolSpec` declared in a module of `agent_tools.tools`, found by importing them.
Curated and parameterised; there is no "run any query" tool.

The grant table (`GRANTS`) and the tool lists the server, tests and evals use are derived from here; a tool's
name is written once, in its declaration.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from agent_tools import tools as _families
from agent_tools.spec import ToolSpec
from guards.gate import grants_of
from guards.principal import Role


def discover(package: ModuleType = _families) -> tuple[ToolSpec, ...]:
    """Every ToolSpec at module level in `package`'s modules (module by module, in declaration order)."""
    found: dict[str, ToolSpec] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for value in vars(module).values():
            if isinstance(value, ToolSpec) and found.setdefault(value.name, value) is not value:
                raise ValueError(f"tool {value.name!r} is declared twice")
    return tuple(found.values())


TOOLS: tuple[ToolSpec, ...] = discover()
BY_NAME: dict[str, ToolSpec] = {t.name: t for t in TOOLS}
TOOL_NAMES: frozenset[str] = frozenset(BY_NAME)
#: Which role may call which tool; anything not listed is denied.
GRANTS: dict[str, frozenset[Role]] = grants_of(TOOLS)


def granted(role: Role) -> list[str]:
    """The tools `role` may call, by name."""
    return sorted(t.name for t in TOOLS if role in t.grant)
