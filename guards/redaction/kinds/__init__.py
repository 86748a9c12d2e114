"""The PII kinds, one unit each. A unit (a module, or a package for PERSON) declares its `SPEC`: its
recognisers (patterns + validators), context cues, field hints and whether a partial mask shows its tail.

Adding a kind is adding a unit here; `PiiKind`, the cue tables, the field hints and the masking rules are
all derived from this list. The one cross-kind piece is the digit classifier (`guards.redaction.digits`),
which tells BVN, NIN, phone, SSN, card and account numbers of the same shape apart using the units' cues.
"""

from __future__ import annotations

from enum import StrEnum

from ..context import register_cues
from ..spec import KindSpec
from . import (
    address,
    bank_account,
    bvn,
    card,
    crypto_address,
    date_of_birth,
    email,
    iban,
    ip_address,
    nin,
    passport,
    person,
    phone,
    ssn,
)

UNITS: tuple[KindSpec, ...] = (
    card.SPEC,
    iban.SPEC,
    bank_account.SPEC,
    bvn.SPEC,
    nin.SPEC,
    ssn.SPEC,
    phone.SPEC,
    email.SPEC,
    person.SPEC,
    address.SPEC,
    date_of_birth.SPEC,
    ip_address.SPEC,
    crypto_address.SPEC,
    passport.SPEC,
)

PiiKind = StrEnum("PiiKind", [(u.kind, u.kind) for u in UNITS], module=__name__)
PiiKind.__doc__ = "Kinds of personal data the engine recognises (one per unit in guards.redaction.kinds)."

register_cues({u.kind: u.cues for u in UNITS if u.cues})

#: Normalised dict key -> the kind its whole value is ("phone_number" -> PHONE).
FIELD_HINTS: dict[str, PiiKind] = {hint: PiiKind(u.kind) for u in UNITS for hint in u.field_hints}
#: Kinds whose last four characters are a meaningful, low-risk hint ("card ending 1234").
TAIL_KINDS: frozenset[PiiKind] = frozenset(PiiKind(u.kind) for u in UNITS if u.tail)

__all__ = ["FIELD_HINTS", "TAIL_KINDS", "UNITS", "PiiKind"]
