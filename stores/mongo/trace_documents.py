"""Documents of the AI trace model: a trace (a conversation), its observations (turns, tool calls, retrievals,
resource reads, prompts served) and the prompt versions they used. Scores are `FeedbackSignal`s on a trace or
one of its observations (`documents.FeedbackSignal.observation_id`).

Only redacted values are stored: arguments and outputs are redacted before they are written, the principal of
a customer is a keyed pseudonym, and an unknown tool or prompt name is kept as its keyed digest only.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from stores.mongo.documents import Doc, Part, ShortText, UserId, UtcDatetime, now

ObservationKind = Literal["turn", "tool_call", "retrieval", "resource_read", "prompt"]
#: The guard's decision on the call, or `ok` for observations that are not calls.
Status = Literal["ok", "allowed", "denied", "error", "rate_limited"]


class TracePrincipal(Part):
    """Who acted: a customer as a keyed pseudonym (`cust_<hmac>`), staff as role and subject."""

    role: ShortText
    id: ShortText


class TraceDoc(Doc):
    """One trace: a conversation the client named, or the trace of one MCP session. `_id` is the trace id."""

    user_id: UserId  # shard key; the customer, or GLOBAL_USER_ID for staff traces
    principal: TracePrincipal
    origin: Literal["conversation", "session"]
    transport: ShortText | None = None
    created_at: UtcDatetime = Field(default_factory=now)
    expires_at: UtcDatetime


class RankedResult(Part):
    """One result of a retrieval, in rank order (also the model prediction of that retrieval)."""

    rank: int = Field(ge=1)
    id: str = Field(max_length=300)
    score: float
    doc_type: ShortText | None = None


class Observation(Doc):
    """One observation of a trace. `_id` is the observation id (returned to the client in the result's `_meta`)."""

    trace_id: str = Field(max_length=200)
    parent_id: str | None = Field(None, max_length=200)
    user_id: UserId
    principal: TracePrincipal
    kind: ObservationKind
    #: Tool name, prompt name, resource (URI or template) or turn role; `unknown` for a name we do not know.
    name: ShortText
    status: Status
    reason: ShortText | None = None
    #: The audit row of the same call (`audit_logs.request_id`) and its keyed argument digest.
    request_id: str | None = Field(None, max_length=64)
    args_digest: str | None = Field(None, max_length=64)
    requested_name_digest: str | None = Field(None, max_length=64)
    arguments: dict[str, Any] = Field(default_factory=dict)
    #: Redacted output when small; otherwise only its size and keyed digest.
    output: Any = None
    output_bytes: int = Field(0, ge=0)
    output_digest: str | None = Field(None, max_length=64)
    output_stored: bool = False
    #: Findings redacted from this observation's values, per PII kind (the call's output and its arguments).
    redactions: dict[str, int] = Field(default_factory=dict)
    tokens: int = Field(0, ge=0)
    latency_ms: float = Field(0.0, ge=0)
    results: list[RankedResult] = Field(default_factory=list, max_length=200)
    #: Fixed facts (mode, k, prompt version and template hash, refused trace...), never caller text.
    metadata: dict[str, Any] = Field(default_factory=dict)
    started_at: UtcDatetime
    created_at: UtcDatetime = Field(default_factory=now)
    expires_at: UtcDatetime


class PromptVersionDoc(Doc):
    """A prompt template at one version. `_id` is `<name>@<version>`; a changed template is a new version."""

    name: ShortText
    version: ShortText
    template: str = Field(max_length=20_000)
    template_sha256: str = Field(max_length=64)
    user_id: UserId = "00000000-0000-0000-0000-000000000000"
    created_at: UtcDatetime = Field(default_factory=now)


class TrainingOptOut(Doc):
    """A customer who opted out of their conversations being used as training data (`_id` is the user id);
    the training export leaves their conversations out. Opting back in deletes the document."""

    user_id: UserId
    created_at: UtcDatetime = Field(default_factory=now)
