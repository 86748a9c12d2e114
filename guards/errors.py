"""Guard errors: each maps to one clear, safe message for the agent (no SQL, stack or PII)."""

from __future__ import annotations


class GuardError(Exception):
    """Base: `decision` is what the audit row records."""

    decision = "error"
    public_message = "the request failed"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.public_message)
        self.message = message or self.public_message


class Unauthenticated(GuardError):
    """`code` is a short fixed reason (never caller input): audit rows and failure aggregation key on it."""

    decision = "denied"
    public_message = "authentication required: no valid token (missing, malformed, forged or expired)"

    def __init__(self, message: str | None = None, *, code: str = "invalid_token") -> None:
        super().__init__(message)
        self.code = code


class Forbidden(GuardError):
    decision = "denied"
    public_message = "not permitted for this principal"


class RateLimited(GuardError):
    decision = "rate_limited"

    def __init__(self, retry_after_s: float) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(f"rate limit exceeded; retry after {retry_after_s:.1f}s")


class BadInput(GuardError):
    decision = "denied"
    public_message = "invalid arguments"


class NotFoundInScope(GuardError):
    """A record that does not exist or is outside the caller's scope (the two are not told apart): denied."""

    decision = "denied"
    public_message = "no such record in your scope"


class Unavailable(GuardError):
    decision = "error"
    public_message = "a data store is temporarily unavailable; try again shortly"


class Disabled(GuardError):
    """The tool is switched off by an operator (its feature flag): refused before it reads anything."""

    decision = "denied"
    public_message = "this tool is switched off by the operator; try again later"
