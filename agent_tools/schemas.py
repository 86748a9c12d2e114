"""The output schema a tool publishes: its output model's JSON schema, flattened for the clients that validate it.

An MCP client checks every structured answer against the tool's `outputSchema` (the Python SDK's `call_tool`
does, with `jsonschema`), and that check runs once per list row. Two shapes pydantic emits make each row cost
more than it needs to, without saying anything a flat schema does not:

- `{"$ref": "#/$defs/Row"}`: every row is resolved through the reference (about a third of the check's time on
  a 50-row page). The definition is inlined where it is referenced, and `$defs` goes away. A model that contains
  itself keeps the references of that cycle (and the definitions they need): it cannot be inlined.
- `{"anyOf": [{"type": "string", ...}, {"type": "null"}]}` for an optional field: each alternative is a
  subschema the validator descends into. It becomes `{"type": ["string", "null"], ...}` when that is the same
  set of values: every alternative has one type and, besides annotations, only keywords that apply to that type
  alone (a string's `format` or `pattern` never rejects a null), and no two alternatives share a type.

The result is still a JSON Schema (2020-12) that accepts exactly the values the model's own schema accepts
(tests/unit/test_output_schemas.py checks both on values sampled from every tool's schema and on mutations of them).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

_DEFS = "#/$defs/"
#: Keywords that only ever constrain instances of one JSON type (any other instance passes them).
_ONLY_FOR: dict[str, frozenset[str]] = {
    "string": frozenset({"format", "pattern", "minLength", "maxLength", "contentEncoding", "contentMediaType"}),
    "number": frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}),
    "array": frozenset({"items", "prefixItems", "minItems", "maxItems", "uniqueItems", "contains", "minContains",
                        "maxContains", "unevaluatedItems"}),
    "object": frozenset({"properties", "required", "additionalProperties", "patternProperties", "propertyNames",
                         "minProperties", "maxProperties", "dependentRequired", "dependentSchemas",
                         "unevaluatedProperties"}),
}
_ONLY_FOR["integer"] = _ONLY_FOR["number"]
#: Keywords that never reject anything.
_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly"})


def output_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The schema `model`'s answers are published and validated with: `$ref`s inlined, optional types flattened."""
    return flatten(model.model_json_schema())


def flatten(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with its local `$ref`s inlined (but those of a cycle) and `anyOf`s of single types merged."""
    defs: dict[str, Any] = schema.get("$defs", {})
    kept: set[str] = set()

    def walk(node: Any, expanding: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [walk(x, expanding) for x in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_DEFS) and ref[len(_DEFS):] in defs:
            name = ref[len(_DEFS):]
            if name in expanding:  # a model inside itself: this reference stays
                kept.add(name)
                return {k: walk(v, expanding) for k, v in node.items()}
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            if any(k in defs[name] and k not in _ANNOTATIONS for k in siblings):  # both constrain: keep both
                return walk({"allOf": [defs[name]], **siblings}, (*expanding, name))
            return walk({**defs[name], **siblings}, (*expanding, name))
        out = {k: walk(v, expanding) for k, v in node.items() if k != "$defs"}
        return _merge_any_of(out)

    out = walk(schema, ())
    pending, done = set(kept), set()
    while pending:  # the definitions the kept references need, each inlined up to its own cycle
        name = pending.pop()
        done.add(name)
        before = set(kept)
        defs_out = walk(defs[name], (name,))
        out.setdefault("$defs", {})[name] = defs_out
        pending |= (kept - before) - done
    return out


def _merge_any_of(node: dict[str, Any]) -> dict[str, Any]:
    """`{"anyOf": [{"type": "string", "format": ...}, {"type": "null"}], ...}` as `{"type": ["string", "null"],
    "format": ..., ...}`, when that is the same constraint (see the module's docstring); else `node` unchanged."""
    options = node.get("anyOf")
    if not isinstance(options, list) or len(options) < 2 or "type" in node:
        return node
    types: list[str] = []
    merged: dict[str, Any] = {}
    for option in options:
        kind = option.get("type") if isinstance(option, dict) else None
        if not isinstance(kind, str) or kind in types:
            return node
        # integer and number overlap (an integer is a number): their keywords could then reject each other's values
        if {kind, *types} >= {"integer", "number"}:
            return node
        for key, value in option.items():
            if key == "type":
                continue
            if key not in _ONLY_FOR.get(kind, ()) and key not in _ANNOTATIONS:
                return node
            if key in merged or key in node:
                return node
            merged[key] = value
        types.append(kind)
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    return {**rest, "type": types, **merged}
