"""Errors of the ground floor. `stores.errors.StoreConfigError` is a ConfigError too."""

from __future__ import annotations


class ConfigError(Exception):
    """A setting is missing, malformed or incoherent with another; the message names the variable."""

    store: str = "config"

    def __init__(self, message: str, *, store: str | None = None) -> None:
        super().__init__(message)
        if store:
            self.store = store


class StackError(RuntimeError):
    """A local server (or its secrets and data) could not be provisioned, started or stopped; the message
    says what to do."""
