"""What a tool handler gets for one call: `ToolContext`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

from agent_tools.repositories import Repositories
from config.settings import Settings
from guards.call import CallState
from guards.principal import Principal

if TYPE_CHECKING:
    from retrieval.service import KnowledgeRetriever
    from stores.mongo.ai_logging import AILogger

S = TypeVar("S")


@dataclass(frozen=True)
class ToolContext(Generic[S]):
    """Who calls, the scope the guard resolved for the tool's declared rule, and typed access to the data.

    `call` is the call's audit state (a tool that unmasks records the stated reason there). The retriever is
    loaded on first use (the embedding model takes seconds).
    """

    principal: Principal
    scope: S
    repos: Repositories
    settings: Settings
    call: CallState
    ai_log: AILogger | None = None
    load_retriever: Callable[[], KnowledgeRetriever] | None = field(default=None, repr=False)

    @property
    def retriever(self) -> KnowledgeRetriever:
        if self.load_retriever is None:
            raise RuntimeError("this context has no knowledge retriever")
        return self.load_retriever()
