"""Authorisation to decrypt PII fields of the credit store: a `RevealGrant`, or nothing (masked).

Repositories decrypt only for a valid grant: a compliance officer, named, with a stated reason. The guard
layer issues grants from a verified principal (`guards.access.reveal_grant`); the repositories re-validate
whatever they are handed, so anything else (a bare `True`, a grant forged with `model_construct`) is
refused with `RevealRefused` before the query runs.
"""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stores.errors import StoreError

log = logging.getLogger(__name__)


class RevealRefused(StoreError):
    """Decryption of PII was asked for without a valid grant."""


class RevealGrant(BaseModel):
    """Who may see decrypted identifiers, and why (the reason goes to the log and the call's audit row)."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    role: Literal["compliance_officer"]
    subject: str = Field(min_length=1, max_length=200)
    reason: str = Field(min_length=10, max_length=500)


def check_grant(grant: object, *, what: str) -> RevealGrant | None:
    """The validated grant, None for the default (masked) path; RevealRefused for anything else."""
    if grant is None:
        return None
    if not isinstance(grant, RevealGrant):
        raise RevealRefused("decrypting PII needs a RevealGrant", store="mongo")
    try:
        checked = RevealGrant.model_validate(grant.model_dump())
    except ValidationError as exc:
        raise RevealRefused("the reveal grant is not valid (role or reason)", store="mongo") from exc
    log.info("PII of %s revealed to %s %s: %s", what, checked.role, checked.subject, checked.reason)
    return checked
