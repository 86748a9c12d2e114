"""What a tool handler gets for one call: `ToolContext`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from agent_tools.flags import FlagReader
from agent_tools.repositories import Repositories
from config.settings import Settings
from guards.call import CallState
from guards.principal import Principal
from stores.errors import StoreUnavailable

if TYPE_CHECKING:
    from retrieval.service import KnowledgeRetriever
    from services.wiring import ServiceSet
    from stores.mongo.ai_logging import AILogger

S = TypeVar("S")


@dataclass(frozen=True)
class ToolContext(Generic[S]):
    """Who calls, the scope the guard resolved for the tool's declared rule, and typed access to the data.

    `call` is the call's audit state (a tool that unmasks records the stated reason there). The retriever is
    loaded on first use (the embedding model takes seconds). `services`: the process's services
    (`services.wiring`: credit, users, FX with their cache-aside reads) over the agent's least-privilege
    connections; their reads take the scope the guard resolved. `flag(key)`: a feature flag's value for the
    caller.
    """

    principal: Principal
    scope: S
    repos: Repositories
    settings: Settings
    call: CallState
    ai_log: AILogger | None = None
    load_retriever: Callable[[], KnowledgeRetriever] | None = field(default=None, repr=False)
    service_set: ServiceSet | None = field(default=None, repr=False)
    flags: FlagReader = field(default_factory=FlagReader, repr=False)

    @property
    def services(self) -> ServiceSet:
        if self.service_set is None:
            raise StoreUnavailable("the services are not started in this process", store="services")
        return self.service_set

    def flag(self, key: str) -> Any:
        """The value of a known feature flag for the calling principal (its code default while unset)."""
        return self.flags.value(key, self.principal)

    @property
    def retriever(self) -> KnowledgeRetriever:
        if self.load_retriever is None:
            raise RuntimeError("this context has no knowledge retriever")
        return self.load_retriever()
