"""A tool is one declaration: what `ToolSpec` enforces, what the registry derives from the declarations, and the
scope rules the guard resolves before a handler runs (pure logic: coach assignments are a fake)."""

from __future__ import annotations

import sys
import textwrap
import uuid
from uuid import UUID

import pytest
from pydantic import BaseModel

from agent_tools.common import ToolInput
from agent_tools.registry import BY_NAME, GRANTS, TOOLS, discover
from agent_tools.spec import ToolSpec
from guards.access import (
    KNOWLEDGE_DOC_TYPES,
    AccessSources,
    audit_trail,
    knowledge,
    one_user,
    own_conversation,
    own_rows,
)
from guards.errors import BadInput, Forbidden, NotFoundInScope, Unavailable
from guards.principal import Principal, Role
from stores.errors import ScopeRefused
from stores.mongo.documents import GLOBAL_USER_ID
from stores.scope import AuditScope, RowScope

ME, OTHER, ASSIGNED = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()


class Assignments:
    async def users_assigned_to(self, subject: str) -> list[UUID]:
        return [ASSIGNED] if subject == "coach-1" else []


class Owners:
    """Conversation owners as the credit store keeps them: the first claim of an id wins."""

    def __init__(self) -> None:
        self.owner: dict[str, str] = {}

    async def claim(self, conversation_id: str, owner: str, *, user_id: str) -> bool:
        return self.owner.setdefault(conversation_id, owner) == owner


ACCESS = AccessSources(assignments=Assignments(), min_cell_size=5, conversations=Owners())


def who(role: Role, subject: str | None = None) -> Principal:
    return Principal(subject=subject or f"{role.value}-1", role=role,
                     user_id=ME if role is Role.CUSTOMER else None, token_id="t", expires_at=0, issuer="kredete")


class Args(ToolInput):
    user_id: UUID | None = None
    doc_types: list[str] | None = None
    conversation_id: str | None = None


class Out(BaseModel):
    rows: list[int]


async def _handler(args: Args, ctx) -> Out:
    return Out(rows=[])


def _spec(**overrides) -> ToolSpec:
    fields = dict(name="probe_tool", title="Probe", description="d", input_model=Args, output_model=Out,
                  handler=_handler, grant={Role.CUSTOMER}, scope=own_rows(), list_field="rows")
    return ToolSpec(**{**fields, **overrides})


# --- the declaration -------------------------------------------------------------------------------------

def test_every_declared_tool_carries_its_grant_and_scope_rule_and_the_grants_derive_from_them():
    assert TOOLS and len(BY_NAME) == len(TOOLS)
    assert {t.name: t.grant for t in TOOLS} == GRANTS
    for t in TOOLS:
        assert t.grant and t.grant <= frozenset(Role), t.name
        assert callable(t.scope.resolve) and t.scope.summary, t.name
        assert t.input_model.model_config["extra"] == "forbid", t.name


def test_a_declaration_is_checked_when_it_is_made():
    assert _spec().grant == frozenset({Role.CUSTOMER})
    with pytest.raises(ValueError, match="needs a grant"):
        _spec(grant=set())
    with pytest.raises(ValueError, match="list_field"):
        _spec(list_field="nope")
    with pytest.raises(ValueError, match="lower_snake_case"):
        _spec(name="Probe Tool")
    with pytest.raises(ValueError):
        _spec(grant={"admin"})

    class Loose(BaseModel):  # not a ToolInput: would accept unknown arguments
        x: int = 0

    with pytest.raises(TypeError, match="ToolInput"):
        _spec(input_model=Loose)


def test_a_new_module_of_tools_is_found_without_registering_it(tmp_path, monkeypatch):
    pkg = tmp_path / "probe_tools"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "one.py").write_text(textwrap.dedent("""
        from tests.unit.test_tool_declarations import _spec
        PROBE = _spec(name="probe_one")
        SAME = PROBE  # the same declaration under two names is one tool
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    import probe_tools

    assert [t.name for t in discover(probe_tools)] == ["probe_one"]
    (pkg / "two.py").write_text("from tests.unit.test_tool_declarations import _spec\nP = _spec(name='probe_one')\n")
    with pytest.raises(ValueError, match="declared twice"):
        discover(probe_tools)
    for name in [m for m in sys.modules if m.startswith("probe_tools")]:
        monkeypatch.delitem(sys.modules, name)


# --- scope rules, resolved from the principal --------------------------------------------------------------

async def test_own_rows_binds_customers_to_themselves_coaches_to_assignments_support_to_everyone():
    rule = own_rows(narrow_to="user_id")
    assert await rule.resolve(who(Role.CUSTOMER), Args(), ACCESS) == RowScope.users(ME)
    assert await rule.resolve(who(Role.CUSTOMER), Args(user_id=ME), ACCESS) == RowScope.users(ME)
    with pytest.raises(Forbidden):
        await rule.resolve(who(Role.CUSTOMER), Args(user_id=OTHER), ACCESS)
    assert await rule.resolve(who(Role.SUPPORT_AGENT), Args(), ACCESS) == RowScope.everyone()
    assert await rule.resolve(who(Role.SUPPORT_AGENT), Args(user_id=OTHER), ACCESS) == RowScope.users(OTHER)
    assert await rule.resolve(who(Role.CREDIT_COACH, "coach-1"), Args(), ACCESS) == RowScope.users(ASSIGNED)
    with pytest.raises(Forbidden):
        await rule.resolve(who(Role.CREDIT_COACH, "coach-1"), Args(user_id=OTHER), ACCESS)
    assert await rule.resolve(who(Role.RISK_ANALYST), Args(), ACCESS) == RowScope.none()
    # Without `narrow_to` an argument cannot widen or move the scope.
    assert await own_rows().resolve(who(Role.SUPPORT_AGENT), Args(user_id=OTHER), ACCESS) == RowScope.everyone()


async def test_one_user_is_the_customer_or_a_user_staff_name_inside_their_scope():
    rule = one_user("user_id")
    mine = await rule.resolve(who(Role.CUSTOMER), Args(), ACCESS)
    assert (mine.user_id, mine.rows) == (ME, RowScope.users(ME))
    with pytest.raises(BadInput, match="user_id is required for staff"):
        await rule.resolve(who(Role.SUPPORT_AGENT), Args(), ACCESS)
    assigned = await rule.resolve(who(Role.CREDIT_COACH, "coach-1"), Args(user_id=ASSIGNED), ACCESS)
    assert (assigned.user_id, assigned.rows) == (ASSIGNED, RowScope.users(ASSIGNED))
    with pytest.raises(Forbidden):
        await rule.resolve(who(Role.CREDIT_COACH, "coach-2"), Args(user_id=ASSIGNED), ACCESS)


async def test_knowledge_scope_is_the_roles_document_types_and_rows():
    rule = knowledge()
    analyst = await rule.resolve(who(Role.RISK_ANALYST), Args(), ACCESS)
    assert analyst.doc_types == ("kb",) and analyst.rows == RowScope.none()
    customer = await rule.resolve(who(Role.CUSTOMER), Args(doc_types=["dispute", "kb"]), ACCESS)
    assert customer.doc_types == ("dispute", "kb") and customer.rows == RowScope.users(ME)
    everything = await rule.resolve(who(Role.CUSTOMER), Args(), ACCESS)
    assert set(everything.doc_types) == KNOWLEDGE_DOC_TYPES[Role.CUSTOMER]
    with pytest.raises(Forbidden, match="none of the requested document types"):
        await rule.resolve(who(Role.SUPPORT_AGENT), Args(doc_types=["credit_report"]), ACCESS)


async def test_a_conversation_belongs_to_the_first_principal_that_uses_it():
    access = AccessSources(assignments=Assignments(), min_cell_size=5, conversations=Owners())
    rule = own_conversation("conversation_id")
    mine = await rule.resolve(who(Role.CUSTOMER), Args(conversation_id="c-1"), access)
    assert (mine.conversation_id, mine.user_id) == ("c-1", str(ME))
    assert await rule.resolve(who(Role.CUSTOMER, "another-token-subject"), Args(conversation_id="c-1"), access)
    for other in (who(Role.SUPPORT_AGENT), who(Role.CREDIT_COACH)):
        with pytest.raises(NotFoundInScope):  # refused like an id that names nothing in the caller's scope
            await rule.resolve(other, Args(conversation_id="c-1"), access)
        with pytest.raises(NotFoundInScope):
            await knowledge().resolve(other, Args(conversation_id="c-1"), access)
    staff = await rule.resolve(who(Role.SUPPORT_AGENT), Args(), access)
    assert staff.conversation_id.startswith("mcp-") and staff.user_id == GLOBAL_USER_ID
    with pytest.raises(Unavailable):  # ownership cannot be checked: fail closed
        await rule.resolve(who(Role.CUSTOMER), Args(conversation_id="c-2"),
                           AccessSources(assignments=Assignments(), min_cell_size=5))


async def test_the_audit_trail_is_a_compliance_officers_scope_only():
    assert await audit_trail().resolve(who(Role.COMPLIANCE_OFFICER), Args(), ACCESS) == AuditScope(
        "compliance_officer", "compliance_officer-1")
    for role in set(Role) - {Role.COMPLIANCE_OFFICER}:
        with pytest.raises(ScopeRefused):
            await audit_trail().resolve(who(role), Args(), ACCESS)


def test_the_readme_lists_every_tool_with_its_grant():
    """The README's tool table is documentation of the declarations: same tools, same roles."""
    import re

    from config.paths import REPO_ROOT

    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("\n## Tools\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \| ([^|]+) \|", section, re.MULTILINE)
    every = {r.value for r in Role}
    listed = {name: every if roles.strip() == "all roles" else {x.strip() for x in roles.split(",")}
              for name, roles in rows}
    assert listed == {t.name: {r.value for r in t.grant} for t in TOOLS}


# --- feature switches ------------------------------------------------------------------------------------

def test_a_switchable_tool_names_a_known_boolean_flag():
    assert _spec(enabled_by="tools.get_fx_quote.enabled").enabled_by == "tools.get_fx_quote.enabled"
    for key in ("tools.get_fx_quote.enable", "search_knowledge.default_mode"):  # a typo, a string flag
        with pytest.raises(ValueError, match="not a known boolean flag"):
            _spec(enabled_by=key)


async def test_a_tool_an_operator_switched_off_is_refused_for_whom_the_flag_is_off():
    """Evaluated through OpenFeature with the project's provider: targeting on the principal's role, the kill
    switch, and a gate without flags treats a switchable tool as off."""
    from openfeature import api

    from agent_tools.flags import FlagReader
    from guards.errors import Disabled
    from guards.gate import Gate
    from services.flags import FlagDefinition, RedisFlagProvider, template

    key = "tools.get_fx_quote.enabled"
    provider = RedisFlagProvider(None)
    api.set_provider(provider, "unit-switches")
    switched, plain = _spec(name="probe_switched", enabled_by=key), _spec(name="probe_plain")
    gate = Gate([switched, plain], authenticator=None, rate_limiter=None, audit=None, redactor=None,
                access=ACCESS, switches=FlagReader("unit-switches"))
    customer, agent = who(Role.CUSTOMER), who(Role.SUPPORT_AGENT)
    gate.require_enabled("probe_switched", customer)  # unset: the code default (on)

    provider.flags = {key: FlagDefinition.model_validate(
        {**template(key), "rules": [{"attribute": "role", "in": ["customer"], "variant": "off"}]})}
    with pytest.raises(Disabled, match=f"probe_switched is switched off .*{key}"):
        gate.require_enabled("probe_switched", customer)
    gate.require_enabled("probe_switched", agent)
    gate.require_enabled("probe_plain", customer)  # a tool without a flag is never switched off

    provider.flags = {key: FlagDefinition.model_validate({**template(key), "enabled": False})}
    for principal in (customer, agent):
        with pytest.raises(Disabled):
            gate.require_enabled("probe_switched", principal)
    without_flags = Gate([switched], authenticator=None, rate_limiter=None, audit=None, redactor=None,
                         access=ACCESS)
    with pytest.raises(Disabled):
        without_flags.require_enabled("probe_switched", agent)
