"""The import structure the design promises, checked on the source (no imports executed).

Layers point down: config → stores → retrieval → guards → agent_tools → server; only `stores/` touches a
driver; nothing below the CLI imports `kredete`; no import cycle between modules; retrieval reaches the
stores only through their APIs, never through an adapter's raw client.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from config.paths import REPO_ROOT

PACKAGES = ("config", "stores", "retrieval", "guards", "agent_tools", "services", "kredete", "evals", "bench",
            "migrations")
DRIVERS = ("asyncpg", "pymongo", "redis", "opensearchpy", "boto3", "aioboto3")
#: Benchmarks may keep a raw driver only for the floor they measure the project's own path against.
BENCH_FLOORS = {
    "bench.seed": "plain COPY and COPY into the real schema, the baselines of the seeder",
    "bench.tool_calls": "a bare asyncpg pool with the repository's statements and a bare pymongo client with its "
                        "filter, the baselines of the tool calls",
}
#: What each layer may import from the project (besides itself and config). Anything else points up.
ALLOWED = {
    "config": set(),
    "stores": set(),
    "retrieval": {"stores"},
    "guards": {"stores", "retrieval"},
    "services": {"stores"},
    "agent_tools": {"stores", "retrieval", "guards", "services"},
}
#: Layers below the CLI: none of them may import `kredete`.
BELOW_THE_CLI = ("config", "stores", "retrieval", "guards", "services", "agent_tools", "server")
#: Attributes of the adapters that hand out the driver's own objects (OpenSearch/PyMongo/S3/Redis clients,
#: the PyMongo database, asyncpg connections and pools).
RAW_HANDLES = frozenset({"os", "client", "db", "connection", "transaction", "primary", "replica"})
#: Methods of the drivers' objects (asyncpg, PyMongo, opensearch-py, boto3).
DRIVER_METHODS = frozenset({
    "fetch", "fetchrow", "fetchval", "execute", "executemany", "copy_to_table", "copy_records_to_table",
    "copy_from_query", "find", "find_one", "aggregate", "distinct", "to_list", "insert_one", "insert_many",
    "update_one", "update_many", "delete_one", "delete_many", "mget", "bulk", "delete_by_query",
    "list_objects_v2", "get_object", "put_object"})


def _modules() -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for path in (REPO_ROOT / pkg).rglob("*.py"):
            rel = path.relative_to(REPO_ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    found["server"] = REPO_ROOT / "server.py"
    return found


MODULES = _modules()
TREES = {name: ast.parse(path.read_text(), filename=str(path)) for name, path in MODULES.items()}


def _imports(tree: ast.AST, module: str) -> set[str]:
    """Every module name this file imports, at any depth (function-level imports count too)."""
    names: set[str] = set()
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                parent = parent[: len(parent) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


IMPORTS = {name: _imports(tree, name) for name, tree in TREES.items()}


def _project_targets(module: str) -> set[str]:
    """Project modules `module` imports (resolved to the longest known module name)."""
    out = set()
    for name in IMPORTS[module]:
        parts = name.split(".")
        for i in range(len(parts), 0, -1):
            candidate = ".".join(parts[:i])
            if candidate in MODULES and candidate != module:
                out.add(candidate)
                break
    return out


def test_the_checks_see_the_project():
    """A scan that found nothing would pass every test below."""
    assert {"stores.postgres.pool", "retrieval.ingest", "agent_tools.registry", "kredete.seed.payments",
            "server"} <= set(MODULES)
    assert "asyncpg" in IMPORTS["stores.postgres.pool"]


def test_only_stores_touch_a_driver():
    offenders = sorted(
        f"{m} imports {name}" for m, names in IMPORTS.items() for name in names
        if name.split(".")[0] in DRIVERS and not m.startswith("stores") and m not in BENCH_FLOORS)
    assert offenders == []


def test_bench_floors_are_still_floors():
    """An exemption that no longer imports a driver is stale: drop it."""
    assert [m for m in BENCH_FLOORS if not any(n.split(".")[0] in DRIVERS for n in IMPORTS[m])] == []


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layers_point_down(layer: str):
    allowed = {layer, "config"} | ALLOWED[layer]
    offenders = sorted(
        f"{m} imports {t}" for m in IMPORTS if m.split(".")[0] == layer
        for t in _project_targets(m) if t.split(".")[0] not in allowed and t != "server")
    assert offenders == []


def test_nothing_below_the_cli_imports_it():
    offenders = sorted(f"{m} imports {name}" for m, names in IMPORTS.items() if m.split(".")[0] in BELOW_THE_CLI
                       for name in names if name.split(".")[0] == "kredete")
    assert offenders == []


def test_no_import_cycle():
    graph = {m: _project_targets(m) for m in MODULES}
    # Package __init__ re-exports make every child "import" its parent; only real edges count.
    for m in graph:
        graph[m] = {t for t in graph[m] if not m.startswith(t + ".")}
    seen: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        seen[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if seen.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in seen:
                visit(nxt)
        stack.pop()
        seen[node] = 2

    for node in sorted(graph):
        if node not in seen:
            visit(node)
    assert cycles == []


def _raw_driver_use(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in RAW_HANDLES:
            found.append(f"line {node.lineno}: .{node.attr}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in DRIVER_METHODS):
            found.append(f"line {node.lineno}: .{node.func.attr}()")
    return found


def test_retrieval_reaches_the_stores_through_their_apis():
    """No adapter's raw client, database or connection, and no driver call, anywhere in retrieval/."""
    offenders = {m: found for m in sorted(TREES) if m.split(".")[0] == "retrieval"
                 if (found := _raw_driver_use(TREES[m]))}
    assert offenders == {}


def test_the_raw_driver_check_catches_what_retrieval_used_to_do():
    before = """
async def f(store, pg, db, objects):
    await store.call(store.os.bulk(body=[]))
    async with pg.connection(replica=True) as conn:
        await conn.fetch("SELECT 1")
    await db["credit_reports"].find({}).to_list(10)
    async with objects.client() as s3:
        await s3.get_object(Bucket="b", Key="k")
"""
    found = _raw_driver_use(ast.parse(before))
    assert {f.split(": ")[1] for f in found} == {".os", ".bulk()", ".connection", ".fetch()", ".find()",
                                                ".to_list()", ".client", ".get_object()"}
