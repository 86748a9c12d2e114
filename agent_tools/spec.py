"""A tool is one declaration: `ToolSpec`, next to its input model, output model and handler.

    get_transaction = ToolSpec(
        name="get_transaction", title="Get a transaction", description="...",
        input_model=GetTransactionInput, output_model=TransactionDetailOut, handler=get_transaction_handler,
        grant={Role.CUSTOMER, Role.SUPPORT_AGENT}, scope=own_rows(), render=render_transaction)

The registry finds every ToolSpec in the modules of `agent_tools.tools`; the grant table, the tools the
server lists and the lists the tests and evals use all derive from these declarations.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from agent_tools import schemas
from agent_tools.common import ToolInput
from agent_tools.context import ToolContext
from agent_tools.flags import known_flag
from guards.access import ScopeRule
from guards.principal import Role

I = TypeVar("I", bound=ToolInput)  # noqa: E741 - the conventional name of an input type variable
O = TypeVar("O", bound=BaseModel)  # noqa: E741
S = TypeVar("S")

_NAME = re.compile(r"^[a-z][a-z0-9_]{2,63}$")


@dataclass(frozen=True, kw_only=True)
class ToolSpec(Generic[I, O, S]):
    """Everything about one tool.

    `grant`: the roles that may call it (anything else is denied). `scope`: the rule the guard resolves from
    the verified principal before `handler` runs (`guards.access`); the handler gets the result as
    `ctx.scope`. `list_field`: the output's list, which the token budget trims and the audit row counts.
    `read_only=False` marks a write (its audit row is written before it runs). `render`: a short text next to
    the structured content, from the redacted payload. `enabled_by`: a boolean feature flag
    (`services.flags.KNOWN_FLAGS`) an operator switches the tool off with; while it is off for the caller the
    guard refuses the call (audited as denied) before anything is read.
    """

    name: str
    title: str
    description: str
    input_model: type[I]
    output_model: type[O]
    handler: Callable[[I, ToolContext[S]], Awaitable[O]]
    grant: Iterable[Role]
    scope: ScopeRule[S]
    list_field: str | None = None
    read_only: bool = True
    render: Callable[[dict[str, Any]], str] | None = None
    enabled_by: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "grant", frozenset(Role(r) for r in self.grant))
        if not _NAME.match(self.name):
            raise ValueError(f"tool name {self.name!r} must be lower_snake_case")
        if not self.grant:
            raise ValueError(f"{self.name}: a tool needs a grant (no role may call it otherwise)")
        if not issubclass(self.input_model, ToolInput):
            raise TypeError(f"{self.name}: the input model must subclass agent_tools.common.ToolInput")
        if self.enabled_by is not None:
            known_flag(self.enabled_by, "boolean")
        if self.list_field is not None and self.list_field not in self.output_model.model_fields:
            raise ValueError(f"{self.name}: list_field {self.list_field!r} is not a field of the output model")

    def output_schema(self) -> dict[str, Any]:
        """The JSON schema of the tool's answers, as `tools/list` publishes it (`agent_tools.schemas`)."""
        return schemas.output_schema(self.output_model)

    def example(self) -> dict[str, Any]:
        """The first `examples` entry of the input schema, else {}: arguments a granted call can answer without
        knowing any record (the permission matrix of the tests and evals uses them)."""
        examples = self.input_model.model_json_schema().get("examples") or [{}]
        return dict(examples[0])
