"""Redacting a tool's output: every string, with the role's policy and the names and addresses known for the
users the output mentions (a customer's own name stays readable to that customer); around it, the staff field
policy (`guards.field_policy`) withholds or shortens free text per role."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any, Protocol
from uuid import UUID

from guards import field_policy
from guards.call import CallState
from guards.principal import Role
from guards.redaction import redact_value, role_policy

log = logging.getLogger("kredete.guards.redaction")

#: Output fields that name a user whose known names and addresses are looked up for redaction.
USER_FIELDS = ("user_id", "counterparty_user_id")


class KnownPii(Protocol):
    async def known_pii(self, user_ids: list[UUID]) -> dict[UUID, dict[str, list[str]]]: ...


class Prefetch:
    """The known PII of users named before the tool ran (the caller, a `user_id` argument), looked up while it
    runs: the output's own lookup then only asks for the users this one did not cover."""

    def __init__(self, user_ids: set[UUID], task: asyncio.Task[dict[UUID, dict[str, list[str]]]]) -> None:
        self.user_ids = user_ids
        self.task = task

    def cancel(self) -> None:
        """The tool failed: stop the lookup (its outcome, even an error, is never left unretrieved)."""
        if not self.task.done():
            self.task.cancel()
        self.task.add_done_callback(lambda t: t.cancelled() or t.exception())


class OutputRedactor:
    def __init__(self, known: KnownPii | None, *, hash_key: bytes) -> None:
        self.known = known
        self.hash_key = hash_key

    def prefetch(self, state: CallState, user_ids: Iterable[UUID | None]) -> Prefetch | None:
        """Start looking up the known PII of `user_ids` and the caller's own (None when there is nothing to ask)."""
        ids = {u for u in user_ids if isinstance(u, UUID)}
        if state.principal is not None and state.principal.user_id:
            ids.add(state.principal.user_id)
        if not ids or self.known is None:
            return None
        return Prefetch(ids, asyncio.ensure_future(self.known.known_pii(sorted(ids))))

    async def _known_pii(self, user_ids: set[UUID], early: Prefetch | None) -> dict[UUID, dict[str, list[str]]]:
        """Names and addresses of exactly `user_ids` (the prefetch's answer for those it covered); a failed
        lookup leaves redaction to the recognisers alone, it is never skipped."""
        known: dict[UUID, dict[str, list[str]]] = {}
        missing = set(user_ids)
        if early is not None:
            try:
                got = await early.task
                known.update((u, got[u]) for u in user_ids & early.user_ids if u in got)
                missing -= early.user_ids
            except Exception as exc:
                log.warning("known PII lookup failed: %s", type(exc).__name__)
        if missing and self.known is not None:
            try:
                known.update(await self.known.known_pii(sorted(missing)))
            except Exception as exc:
                log.warning("known PII lookup failed: %s", type(exc).__name__)
        return known

    async def redact(self, payload: dict[str, Any], state: CallState, *,
                     early: Prefetch | None = None) -> dict[str, Any]:
        """The payload with every string redacted (unmasked only when the call was, with its stated reason);
        the counts per PII kind go to the call's audit row. `early`: a lookup `prefetch` started for this call."""
        principal = state.principal
        # Withheld text never reaches the redactor (nor its NER model); the rest is cut short only once
        # redacted, so a cut cannot split a value the redactor would have recognised whole.
        # A tool without declared free text (or an unmasked call) has nothing either stage would change.
        policed = field_policy.applies(state.tool, unmasked=state.unmasked)
        withheld = truncated = 0
        if policed:
            payload, withheld = field_policy.apply(payload, principal.role, state.tool, unmasked=False,
                                                   stage=field_policy.Treatment.WITHHOLD)
        user_ids = _collect_user_ids(payload)
        if principal.user_id:
            user_ids.add(principal.user_id)
        if user_ids:
            known = await self._known_pii(user_ids, early)
        else:
            known = {}
            if early is not None:
                early.cancel()
        names, addresses, allow = [], [], []
        for uid, pii in known.items():
            if principal.role is Role.CUSTOMER and uid == principal.user_id:
                allow.extend(pii.get("names", []))
                continue
            names.extend(pii.get("names", []))
            addresses.extend(pii.get("addresses", []))
        policy = role_policy(principal.role.value, unmasked=state.unmasked, hash_key=self.hash_key)
        redacted, counts = redact_value(payload, policy, known_names=names, known_addresses=addresses,
                                        allow_names=allow)
        if policed:
            redacted, truncated = field_policy.apply(redacted, principal.role, state.tool, unmasked=False,
                                                     stage=field_policy.Treatment.TRUNCATE)
        counts = {**counts, **{k: n for k, n in (("withheld_text", withheld), ("truncated_text", truncated)) if n}}
        for kind, n in counts.items():
            state.redactions[kind] = state.redactions.get(kind, 0) + n
        return redacted


def _collect_user_ids(value: Any) -> set[UUID]:
    found: set[UUID] = set()

    def walk(v: Any, key: str | None) -> None:
        # Only strings under a user field are read; only dicts and lists are descended into (the leaves of a
        # page's rows are not visited one call each).
        items = v.items() if isinstance(v, dict) else ((key, x) for x in v)
        for k, x in items:
            if isinstance(x, str):
                if k in USER_FIELDS:
                    with contextlib.suppress(ValueError):
                        found.add(UUID(x))
            elif isinstance(x, dict | list):
                walk(x, k)

    if isinstance(value, dict | list):
        walk(value, None)
    return found
