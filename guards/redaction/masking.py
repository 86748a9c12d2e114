"""Masking: what replaces each detected kind (mask, partial, keyed hash, keep), and the per-role defaults."""

from __future__ import annotations

import hashlib
import hmac

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from .kinds import TAIL_KINDS as _TAIL_KINDS
from .models import Action, PiiKind

_PARTIAL_MIN_LEN = 8  # below this, four characters is too much of the value to reveal


class RedactionPolicy(BaseModel):
    """Maps each kind to an action; kinds not listed use `default`.

    `hash_key` is required when any action is `hash`: digests are HMAC-SHA256 so they cannot be reversed
    by hashing candidate values without the key, yet stay stable for joining records.
    """

    model_config = ConfigDict(frozen=True)

    default: Action = Action.MASK
    actions: dict[PiiKind, Action] = Field(default_factory=dict)
    hash_key: SecretStr | None = None
    hash_chars: int = Field(default=8, ge=4, le=64)

    @model_validator(mode="after")
    def _hash_needs_key(self) -> RedactionPolicy:
        uses_hash = self.default is Action.HASH or Action.HASH in self.actions.values()
        if uses_hash and not self.hash_key:
            raise ValueError("a hash action needs hash_key")
        return self

    def action_for(self, kind: PiiKind) -> Action:
        return self.actions.get(kind, self.default)

    def replacement(self, kind: PiiKind, value: str, action: Action | None = None) -> str:
        """Text to put in place of `value` (returns `value` itself for KEEP)."""
        action = action or self.action_for(kind)
        if action is Action.KEEP:
            return value
        if action is Action.PARTIAL:
            return partial(kind, value)
        if action is Action.HASH:
            assert self.hash_key is not None  # guaranteed by the validator
            return f"[{kind.value}:{keyed_digest(self.hash_key.get_secret_value(), kind, value, self.hash_chars)}]"
        return f"[{kind.value}]"


def _canonical(kind: PiiKind, value: str) -> str:
    # Same identifier written with or without separators must hash the same.
    if kind in _TAIL_KINDS:
        return "".join(c for c in value if c.isalnum()).upper()
    return " ".join(value.split()).casefold()


def keyed_digest(key: str, kind: PiiKind, value: str, chars: int = 8) -> str:
    """Short hex HMAC-SHA256 of the canonical value, domain-separated by kind."""
    msg = f"{kind.value}\x00{_canonical(kind, value)}".encode()
    return hmac.new(key.encode(), msg, hashlib.sha256).hexdigest()[:chars]


def partial(kind: PiiKind, value: str) -> str:
    """`****1234` for identifiers, `a***@domain` for emails, full mask for everything else or short values."""
    if kind is PiiKind.EMAIL and "@" in value:
        local, domain = value.rsplit("@", 1)
        return f"{local[:1]}***@{domain}"
    if kind in _TAIL_KINDS:
        chars = [c for c in value if c.isalnum()]
        if len(chars) >= _PARTIAL_MIN_LEN:
            return "****" + "".join(chars[-4:])
    return f"[{kind.value}]"


MASK_ALL = RedactionPolicy()

_ACCOUNT_KINDS = (PiiKind.CARD_NUMBER, PiiKind.BANK_ACCOUNT, PiiKind.IBAN)


def role_policy(role: str, unmasked: bool = False, hash_key: str | None = None) -> RedactionPolicy:
    """Default policy for a caller role.

    - customer: partial cards/accounts/IBANs, mask the rest; the caller passes the customer's own values as
      `allow_names` so their own record stays readable while other people's data is masked.
    - support_agent: partial cards/accounts/IBANs/phones, mask the rest.
    - credit_coach, risk_analyst: mask everything.
    - compliance_officer: mask everything unless `unmasked` (an audited break-glass flag) is set, then keep.
    Unknown roles fail closed to mask-everything. `unmasked` is ignored for every other role.
    `hash_key` is attached so callers can switch kinds to `hash` via ``policy.model_copy``.
    """
    key = SecretStr(hash_key) if hash_key else None
    role = role.strip().lower()
    if role == "customer":
        return RedactionPolicy(actions=dict.fromkeys(_ACCOUNT_KINDS, Action.PARTIAL), hash_key=key)
    if role == "support_agent":
        return RedactionPolicy(actions=dict.fromkeys((*_ACCOUNT_KINDS, PiiKind.PHONE), Action.PARTIAL), hash_key=key)
    if role == "compliance_officer" and unmasked:
        return RedactionPolicy(default=Action.KEEP, hash_key=key)
    return RedactionPolicy(hash_key=key)
