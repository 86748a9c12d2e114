"""The output schemas tools publish (agent_tools.schemas): flat, valid, and accepting exactly what the model's own
schema accepts (what the MCP SDK published before: `$ref`s into `$defs`, `anyOf` for optional fields)."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from mcp.server.mcpserver.utilities.func_metadata import StrictJsonSchema, _inline_root_ref
from pydantic import BaseModel, TypeAdapter

from agent_tools.registry import TOOLS
from agent_tools.schemas import flatten, output_schema
from agent_tools.tools.analytics import CorridorVolumeOut

SAMPLES = 60


def _sdk_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The schema the SDK derives from a tool's output model (what `tools/list` said before)."""
    return _inline_root_ref(TypeAdapter(model).json_schema(schema_generator=StrictJsonSchema))


def _sample(schema: dict[str, Any], defs: dict[str, Any], rng: random.Random, depth: int = 0) -> Any:
    """A value drawn from `schema` (valid more often than not; the pattern and length of strings are ignored)."""
    if "$ref" in schema:
        return _sample(defs[schema["$ref"].split("/")[-1]], defs, rng, depth)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return _sample(rng.choice(schema[key]), defs, rng, depth)
    if "allOf" in schema:
        return _sample(schema["allOf"][0], defs, rng, depth)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return rng.choice(schema["enum"])
    kind = schema.get("type", "string")
    if isinstance(kind, list):
        kind = rng.choice(kind)
    if kind == "object":
        props = schema.get("properties", {})
        required = set(schema.get("required", ()))
        out = {k: _sample(v, defs, rng, depth + 1) for k, v in props.items()
               if k in required or (depth < 4 and rng.random() < 0.7)}
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) and rng.random() < 0.5:
            out["extra_key"] = _sample(extra, defs, rng, depth + 1)
        return out
    if kind == "array":
        items = schema.get("items", {})
        return [_sample(items, defs, rng, depth + 1) for _ in range(rng.randrange(0, 4 if depth < 4 else 1))]
    if kind == "integer":
        return rng.randrange(schema.get("minimum", 0), schema.get("minimum", 0) + 1000)
    if kind == "number":
        return rng.uniform(schema.get("minimum", 0), schema.get("minimum", 0) + 100)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if schema.get("format") == "date-time":
        return "2025-06-01T00:00:00Z"
    return rng.choice(["USD", "completed", "x" * 3, "2025-06-01"])


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in [(*path, k), *_leaves(v, (*path, k))]]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in [(*path, i), *_leaves(v, (*path, i))]]
    return []


def _mutants(value: Any, rng: random.Random) -> list[Any]:
    """`value` with one part replaced by a value of another type, or one key removed."""
    out = []
    for path in rng.sample(_leaves(value), min(8, len(_leaves(value)))):
        for wrong in (None, "12", 12, 1.5, [], {}):
            m = copy.deepcopy(value)
            target = m
            for p in path[:-1]:
                target = target[p]
            target[path[-1]] = wrong
            out.append(m)
        if isinstance(path[-1], str):
            m = copy.deepcopy(value)
            target = m
            for p in path[:-1]:
                target = target[p]
            del target[path[-1]]
            out.append(m)
    return out


@pytest.mark.parametrize("spec", TOOLS, ids=lambda s: s.name)
def test_published_schema_is_flat_valid_and_accepts_what_the_model_schema_accepts(spec):
    flat = spec.output_schema()
    Draft202012Validator.check_schema(flat)
    text = json.dumps(flat)
    assert "$ref" not in text and "$defs" not in text
    assert flat["type"] == "object"
    before = _sdk_schema(spec.output_model)
    old, new = Draft202012Validator(before), Draft202012Validator(flat)
    rng = random.Random(spec.name)
    valid = 0
    for _ in range(SAMPLES):
        value = _sample(before, before.get("$defs", {}), rng)
        for candidate in (value, *_mutants(value, rng)):
            assert old.is_valid(candidate) == new.is_valid(candidate), (spec.name, candidate)
        valid += old.is_valid(value)
    assert valid >= SAMPLES // 4, f"{spec.name}: too few valid samples to compare the schemas on"


def test_a_real_answer_validates_and_a_wrong_typed_one_does_not():
    page = {"rows": [{"day": "2025-06-01T00:00:00Z", "corridor": "NG-GB", "currency": "GBP", "dest_currency": None,
                      "transactions": 12, "volume_minor": 1_234_500}], "suppressed_cells": 5, "min_cell_size": 5,
            "next_cursor": None}
    validator = Draft202012Validator(output_schema(CorridorVolumeOut))
    assert validator.is_valid(page)
    for path, wrong in ((("rows", 0, "transactions"), "12"), (("rows", 0, "dest_currency"), 3),
                        (("next_cursor",), 1), (("suppressed_cells",), -1), (("rows", 0, "day"), None)):
        bad = copy.deepcopy(page)
        target = bad
        for p in path[:-1]:
            target = target[p]
        target[path[-1]] = wrong
        assert not validator.is_valid(bad), path


def test_a_recursive_model_keeps_the_references_of_its_cycle():
    class Node(BaseModel):
        name: str
        children: list[Node] = []

    class Tree(BaseModel):
        root: Node | None = None

    flat = flatten(Tree.model_json_schema())
    Draft202012Validator.check_schema(flat)
    assert flat["properties"]["root"]["type"] == ["object", "null"]
    assert set(flat["$defs"]) == {"Node"}
    validator = Draft202012Validator(flat)
    assert validator.is_valid({"root": {"name": "a", "children": [{"name": "b", "children": []}]}})
    assert not validator.is_valid({"root": {"name": "a", "children": [{"name": 3}]}})


def test_only_anyofs_that_mean_the_same_set_are_merged():
    keeps = [
        {"anyOf": [{"type": "string", "enum": ["a"]}, {"type": "null"}]},  # enum would reject null
        {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "number"}]},  # overlapping types
        {"anyOf": [{"type": "string"}, {"type": "string", "format": "date"}]},
        {"anyOf": [{"type": "string"}, {"not": {"type": "null"}}]},
    ]
    for schema in keeps:
        assert flatten(schema) == schema
    merged = flatten({"anyOf": [{"type": "string", "pattern": "^[A-Z]+$"}, {"type": "null"}], "default": None})
    assert merged == {"type": ["string", "null"], "pattern": "^[A-Z]+$", "default": None}
    assert flatten({"$defs": {"A": {"type": "object", "properties": {"x": {"type": "integer"}}}},
                    "$ref": "#/$defs/A", "description": "d"}) == {
        "type": "object", "properties": {"x": {"type": "integer"}}, "description": "d"}
