"""Who may see what, in one place: tool grants, row scope per role, the scope rules tools declare, knowledge
document types per role, searchable counterparty types, reveal grants and unmask reasons.

A tool declares its grant (roles) and a scope rule (`own_rows`, `one_user`, `knowledge`, `own_conversation`,
`aggregates_only`, `audit_trail`, `reference_data`). The guard pipeline resolves the rule from the verified
principal before the handler runs (as the MCP SDK resolves declared parameters, or Google's MCP Toolbox fills
"authenticated parameters" from token claims); the handler receives the result and never computes scope.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Generic, Protocol, TypeVar
from uuid import UUID

from pydantic import BaseModel, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from guards.call import CallState, current_call
from guards.errors import BadInput, Forbidden, NotFoundInScope, Unavailable
from guards.principal import Principal, Role
from stores.mongo.documents import GLOBAL_USER_ID
from stores.mongo.reveal import RevealGrant
from stores.postgres.models import COUNTERPARTY_TYPES, CounterpartyType
from stores.scope import AuditScope, RowScope

R = Role
ALL_ROLES: frozenset[Role] = frozenset(Role)
#: Roles whose row scope covers every user for the tools they are granted.
ALL_USERS_ROLES: frozenset[Role] = frozenset({R.SUPPORT_AGENT})

#: Document types each role may retrieve through search_knowledge (public articles for all).
KNOWLEDGE_DOC_TYPES: dict[Role, frozenset[str]] = {
    R.CUSTOMER: frozenset({"kb", "credit_report", "dispute", "dispute_letter", "action_plan", "document"}),
    R.SUPPORT_AGENT: frozenset({"kb", "dispute", "dispute_letter"}),
    R.CREDIT_COACH: frozenset({"kb", "credit_report", "action_plan"}),
    R.RISK_ANALYST: frozenset({"kb"}),
    R.COMPLIANCE_OFFICER: frozenset({"kb"}),
}

#: Counterparty types whose names each role sees unmasked, hence may search: a customer all of their own
#: counterparties; staff only merchants and the platform (a person's name is masked for them, so a probe on
#: it must look like a miss).
_EVERY_COUNTERPARTY: tuple[CounterpartyType, ...] = tuple(sorted(set(COUNTERPARTY_TYPES.values())))
STAFF_VISIBLE_COUNTERPARTIES: tuple[CounterpartyType, ...] = ("merchant", "system")


# --- grants ------------------------------------------------------------------------------------------------

Grants = Mapping[str, frozenset[Role]]


def authorize(principal: Principal, tool: str, grants: Grants) -> None:
    """Raise Forbidden unless the role is granted the tool (a tool or role missing from `grants` is denied)."""
    if principal.role not in grants.get(tool, frozenset()):
        raise Forbidden(f"role '{principal.role.value}' may not call '{tool}'")


def searchable_counterparty_types(principal: Principal) -> tuple[CounterpartyType, ...]:
    return _EVERY_COUNTERPARTY if principal.role is Role.CUSTOMER else STAFF_VISIBLE_COUNTERPARTIES


# --- row scope ---------------------------------------------------------------------------------------------

class Assignments(Protocol):
    async def users_assigned_to(self, subject: str) -> list[UUID]: ...


async def scope_for(principal: Principal, requested_user: UUID | None, assignments: Assignments) -> RowScope:
    """The rows this principal may see, narrowed to `requested_user` when given.

    Customers are bound to the token's user id (an argument naming anyone else is refused); coaches to their
    assignments; support agents to everyone; any other role to nobody.
    """
    if principal.role is Role.CUSTOMER:
        if requested_user is not None and requested_user != principal.user_id:
            raise Forbidden("customers can only read their own records")
        return RowScope.users(principal.user_id)
    if principal.role in ALL_USERS_ROLES:
        return RowScope.users(requested_user) if requested_user else RowScope.everyone()
    if principal.role is Role.CREDIT_COACH:
        assigned = set(await assignments.users_assigned_to(principal.subject))
        if requested_user is not None:
            if requested_user not in assigned:
                raise Forbidden("this user is not assigned to you")
            return RowScope.users(requested_user)
        return RowScope(user_ids=frozenset(assigned))
    return RowScope.none()


# --- what a resolved scope hands the handler ------------------------------------------------------------------

@dataclass(frozen=True)
class UserScope:
    """One user a call is about (a customer's own, or the user staff named inside their scope)."""

    user_id: UUID
    rows: RowScope


@dataclass(frozen=True)
class ConversationScope:
    """A conversation (trace) the caller may log under, and the user id its records carry."""

    conversation_id: str
    #: The customer's own id, or the global id for staff (whose logs belong to no customer).
    user_id: str


@dataclass(frozen=True)
class KnowledgeScope:
    doc_types: tuple[str, ...]
    #: The caller's rows for user documents; nobody's when only public articles are searched.
    rows: RowScope
    conversation: ConversationScope


@dataclass(frozen=True)
class AggregateScope:
    """Aggregates only: a cell with fewer than `min_cell_size` transactions or distinct users is withheld."""

    min_cell_size: int

    def reportable_suppressed(self, withheld: int, shown: int) -> int:
        """How many withheld cells an answer may report: none unless it shows at least one cell, and then the
        count rounded down to a multiple of `min_cell_size`.

        So a window whose activity is all small (one quiet corridor, one day) answers exactly like a window
        without any activity, and no answer counts fewer than `min_cell_size` withheld cells. Comparing two
        overlapping windows can still show that withheld cells lie between them (in steps of the cell size),
        never their payments, amounts or users.
        """
        if shown <= 0 or withheld <= 0:
            return 0
        return withheld - withheld % self.min_cell_size


# --- scope rules ---------------------------------------------------------------------------------------------

S = TypeVar("S", covariant=True)


class ConversationOwners(Protocol):
    async def claim(self, conversation_id: str, owner: str, *, user_id: str) -> bool: ...


@dataclass(frozen=True)
class AccessSources:
    """What resolving a scope may consult: coach assignments, conversation owners, the minimum aggregate cell."""

    assignments: Assignments
    min_cell_size: int
    conversations: ConversationOwners | None = None


class ScopeRule(Protocol, Generic[S]):
    #: What the rule gives the caller, in words (for docs and the README).
    summary: str

    async def resolve(self, principal: Principal, args: BaseModel, access: AccessSources) -> S: ...


def _arg(args: BaseModel, name: str | None) -> Any:
    return getattr(args, name) if name else None


@dataclass(frozen=True)
class _OwnRows:
    narrow_to: str | None
    summary: str = ("the caller's rows: a customer's own, a coach's assigned users, every user for support "
                    "agents")

    async def resolve(self, principal: Principal, args: BaseModel, access: AccessSources) -> RowScope:
        return await scope_for(principal, _arg(args, self.narrow_to), access.assignments)


def own_rows(narrow_to: str | None = None) -> ScopeRule[RowScope]:
    """The caller's rows, narrowed to the user named by argument `narrow_to` when given (inside the scope)."""
    return _OwnRows(narrow_to)


@dataclass(frozen=True)
class _OneUser:
    arg: str | None
    summary: str = ("one user: a customer's own; staff must name one inside their scope (coaches: assigned "
                    "users)")

    async def resolve(self, principal: Principal, args: BaseModel, access: AccessSources) -> UserScope:
        uid = _arg(args, self.arg) or principal.user_id
        if uid is None:
            raise BadInput(f"invalid arguments: {self.arg} is required for staff roles")
        return UserScope(user_id=uid, rows=await scope_for(principal, uid, access.assignments))


def one_user(arg: str | None = "user_id") -> ScopeRule[UserScope]:
    """The one user the call is about: a customer's own (from the token), or the `arg` staff must pass
    (`arg=None`: the caller's own user only, for tools granted to customers alone)."""
    return _OneUser(arg)


def conversation_owner(principal: Principal) -> str:
    """Who a conversation belongs to: a customer (every token of that user), or a staff identity (role and
    subject, as the rate limiter keys staff)."""
    if principal.role is Role.CUSTOMER:
        return f"customer:{principal.user_id}"
    return f"{principal.role.value}:{principal.subject}"


async def _conversation(principal: Principal, conversation_id: str | None,
                        access: AccessSources) -> ConversationScope:
    """The conversation a call logs under, claimed for the caller: the first principal to use an id owns it.
    Another principal's id is refused exactly like an id that names no record in the caller's scope."""
    scope = ConversationScope(conversation_id=conversation_id or f"mcp-{uuid.uuid4().hex}",
                              user_id=str(principal.user_id) if principal.user_id else GLOBAL_USER_ID)
    if access.conversations is None:  # ownership cannot be checked: fail closed
        raise Unavailable()
    if not await access.conversations.claim(scope.conversation_id, conversation_owner(principal),
                                            user_id=scope.user_id):
        raise NotFoundInScope()
    return scope


@dataclass(frozen=True)
class _OwnConversation:
    arg: str
    summary: str = "a conversation of the caller's own (the first principal to use an id owns it)"

    async def resolve(self, principal: Principal, args: BaseModel, access: AccessSources) -> ConversationScope:
        return await _conversation(principal, _arg(args, self.arg), access)


def own_conversation(arg: str = "conversation_id") -> ScopeRule[ConversationScope]:
    """The conversation named by `arg` (a new one when it is omitted), owned by the caller."""
    return _OwnConversation(arg)


@dataclass(frozen=True)
class _Knowledge:
    doc_types_arg: str
    conversation_arg: str
    summary: str = ("public articles for all; user documents of the types the role may read (KNOWLEDGE_DOC_TYPES), "
                    "inside the caller's rows")

    async def resolve(self, principal: Principal, args: BaseModel, access: AccessSources) -> KnowledgeScope:
        allowed = KNOWLEDGE_DOC_TYPES[principal.role]
        requested: Iterable[str] | None = _arg(args, self.doc_types_arg)
        doc_types = sorted(allowed & set(requested)) if requested else sorted(allowed)
        if not doc_types:
            raise Forbidden("none of the requested document types is readable by your role")
        user_types = any(t != "kb" for t in doc_types)
        rows = await scope_for(principal, None, access.assignments) if user_types else RowScope.none()
        return KnowledgeScope(doc_types=tuple(doc_types), rows=rows,
                              conversation=await _conversation(principal, _arg(args, self.conversation_arg), access))


def knowledge(doc_types: str = "doc_types", conversation: str = "conversation_id") -> ScopeRule[KnowledgeScope]:
    """Document types the role may retrieve (narrowed by argument `doc_types`), its rows, the conversation."""
    return _Knowledge(doc_types, conversation)


@dataclass(frozen=True)
class _Aggregates:
    summary: str = "aggregates only: no row-level data; small cells withheld"

    async def resolve(self, principal: Principal, args: BaseModel, access: AccessSources) -> AggregateScope:
        return AggregateScope(min_cell_size=access.min_cell_size)


def aggregates_only() -> ScopeRule[AggregateScope]:
    return _Aggregates()


@dataclass(frozen=True)
class _AuditTrail:
    summary: str = "the whole audit trail (compliance officers only)"

    async def resolve(self, principal: Principal, args: BaseModel, access: AccessSources) -> AuditScope:
        return AuditScope.of(principal)


def audit_trail() -> ScopeRule[AuditScope]:
    return _AuditTrail()


@dataclass(frozen=True)
class _ReferenceData:
    summary: str = "reference data only (no user's rows)"

    async def resolve(self, principal: Principal, args: BaseModel, access: AccessSources) -> None:
        return None


def reference_data() -> ScopeRule[None]:
    """Data that belongs to no user (rates, corridors): nothing to scope."""
    return _ReferenceData()


# --- unmasking and revealing: a structured, auditable reason ------------------------------------------------

DEFAULT_UNMASK_TICKET_PATTERN = r"^(CASE|INC|SAR|DSR)-\d{4,}\b"
UNMASK_MIN_PURPOSE_CHARS = 10


class UnmaskPolicy(BaseSettings):
    """`KREDETE_UNMASK_TICKET_PATTERN`: the ticket reference an unmask reason must start with (a regex)."""

    model_config = SettingsConfigDict(env_prefix="KREDETE_UNMASK_", env_file=None, extra="ignore")

    ticket_pattern: str = DEFAULT_UNMASK_TICKET_PATTERN

    @field_validator("ticket_pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        re.compile(v)
        return v


@lru_cache(maxsize=1)
def unmask_policy() -> UnmaskPolicy:
    return UnmaskPolicy()


def unmask_reason_rule(policy: UnmaskPolicy | None = None) -> str:
    """The rule in words, for tool descriptions and error messages."""
    p = (policy or unmask_policy()).ticket_pattern
    return (f"a ticket reference matching {p} (e.g. CASE-12345), then the purpose in at least "
            f"{UNMASK_MIN_PURPOSE_CHARS} characters, e.g. 'CASE-12345: verify identity for a chargeback claim'")


def check_unmask_reason(reason: str, policy: UnmaskPolicy | None = None) -> str:
    """The reason, stripped, if it names a ticket and a purpose; ValueError (never echoing it) otherwise."""
    policy = policy or unmask_policy()
    text = reason.strip()
    m = re.match(policy.ticket_pattern, text)
    if m is None or m.end() == 0:
        raise ValueError(f"unmask_reason must start with {unmask_reason_rule(policy)}")
    purpose = text[m.end():].lstrip(" \t:;,.-–—#")
    if len(purpose.strip()) < UNMASK_MIN_PURPOSE_CHARS or not re.search(r"[^\W\d_]{2}", purpose):
        raise ValueError(f"unmask_reason needs, after the ticket reference, the purpose in at least "
                         f"{UNMASK_MIN_PURPOSE_CHARS} characters")
    return text


def reveal_grant(principal: Principal, reason: str | None, state: CallState | None = None) -> RevealGrant:
    """The only issuer of grants to decrypt credit-store PII: a compliance officer with a stated reason, which
    is recorded in the audit row of the call (`state`, by default the current one)."""
    if principal.role is not Role.COMPLIANCE_OFFICER:
        raise Forbidden("only compliance officers may see decrypted identifiers")
    try:  # the same structured reason (ticket + purpose) as any unmasked read
        stated = check_unmask_reason(reason or "")[:500]
    except ValueError as exc:
        raise BadInput(f"invalid arguments: revealing identifiers needs a structured reason ({exc})") from None
    state = state if state is not None else current_call.get()
    if state is not None:
        state.unmasked = True
        state.reason = f"reveal: {stated}"[:500]
    return RevealGrant(role=principal.role.value, subject=principal.subject, reason=stated)
