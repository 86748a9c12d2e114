"""Feature flags as the tools and their guards read them: OpenFeature evaluations for the calling principal.

The provider (`services.flags.RedisFlagProvider`, started by `services.wiring.start_services`) evaluates an
in-memory snapshot, so an evaluation costs no round trip. The evaluation context is the principal: targeting
key the customer's user id (staff: their subject), attribute `role`. Every flag a tool reads is one of
`services.flags.KNOWN_FLAGS`, whose code default applies while the flag is unset, unknown or unreadable (or
no provider runs in this process).
"""

from __future__ import annotations

from typing import Any

from openfeature.evaluation_context import EvaluationContext

from guards.principal import Principal
from services.flags import KNOWN_FLAGS, context_for, flag_client

#: The OpenFeature domain the server's provider is registered under (`start_services`' default).
FLAG_DOMAIN = "kredete"


def known_flag(key: str, kind: str) -> Any:
    """The code default of a known flag of this kind (ValueError otherwise: a typo would silently read a
    default forever)."""
    if key not in KNOWN_FLAGS or KNOWN_FLAGS[key][0] != kind:
        raise ValueError(f"{key!r} is not a known {kind} flag (services.flags.KNOWN_FLAGS)")
    return KNOWN_FLAGS[key][1]


def evaluation_context(principal: Principal) -> EvaluationContext:
    target = str(principal.user_id) if principal.user_id is not None else principal.subject
    return context_for(target, role=principal.role.value)


class FlagReader:
    """`enabled` serves the guards (`guards.gate.Switches`); `value` the handlers (`ToolContext.flag`)."""

    def __init__(self, domain: str = FLAG_DOMAIN) -> None:
        self.domain = domain

    def enabled(self, key: str, principal: Principal) -> bool:
        default = known_flag(key, "boolean")
        return bool(flag_client(self.domain).get_boolean_value(key, default, evaluation_context(principal)))

    def value(self, key: str, principal: Principal) -> Any:
        kind = KNOWN_FLAGS[key][0] if key in KNOWN_FLAGS else "unknown"
        default = known_flag(key, kind)
        client, ctx = flag_client(self.domain), evaluation_context(principal)
        get = {"boolean": client.get_boolean_value, "string": client.get_string_value,
               "integer": client.get_integer_value, "float": client.get_float_value,
               "object": client.get_object_value}[kind]
        return get(key, default, ctx)
