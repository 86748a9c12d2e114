"""Typed store errors. Messages are safe to show a caller: no SQL, credentials or row data."""

from __future__ import annotations

from config.errors import ConfigError


class StoreError(Exception):
    """Base of every error raised by a store adapter."""

    store: str = "store"

    def __init__(self, message: str, *, store: str | None = None) -> None:
        super().__init__(message)
        if store:
            self.store = store


class StoreUnavailable(StoreError):
    """The server is down, unreachable or did not answer in time."""


class StoreConfigError(StoreError, ConfigError):
    """A URL or credential is malformed or refused."""


class NotFound(StoreError):
    """The record does not exist (or is outside the caller's scope: the two are not told apart)."""


class Conflict(StoreError):
    """A uniqueness or idempotency rule was broken."""


class InvalidData(StoreError):
    """Input or a document failed validation or an integrity rule."""


class ScopeRefused(InvalidData):
    """A read asked for rows its scope may never read (e.g. audit logs without a compliance scope)."""

    store = "scope"


def redact_url(url: str) -> str:
    """A URL with its password replaced, for error messages and logs."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url
