"""What a MongoDB-wire error means: an outage (retry later), a refusal of the data (permanent), or a conflict.

One classification for every path to the credit store, so an agent sees the same message whether FerretDB
itself is down (connection refused, server selection timeout) or FerretDB is up and its PostgreSQL backend is
not: FerretDB then answers every command that reaches the backend with error code 1 (InternalError), whose
text names the backend's address. Such answers are outages here, never shown to anyone.

* **outage** (`is_outage`): no answer (network, timeouts, server selection), the drivers' retryable codes
  (shutdown, not primary, interrupted...), write conflicts, and code 1 (FerretDB's backend down);
* **permanent** (`refusal_reason`): the server refused this document for good: validation, too large,
  invalid document or namespace; nothing else is.
"""

from __future__ import annotations

from bson.errors import InvalidDocument
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    DocumentTooLarge,
    DuplicateKeyError,
    ExecutionTimeout,
    OperationFailure,
    PyMongoError,
    WTimeoutError,
)

from stores.errors import Conflict, InvalidData, StoreError, StoreUnavailable

DUPLICATE_KEY = 11000
#: FerretDB's InternalError: its answer to every command that needs its PostgreSQL backend while that is down.
BACKEND_DOWN = 1
#: Server answers that mean "try again later" (the drivers' retryable set: network, shutdown, not primary,
#: timeouts, write conflicts; plus FerretDB's backend-down code).
TRANSIENT_CODES = frozenset({BACKEND_DOWN, 6, 7, 46, 50, 64, 89, 91, 112, 189, 262, 9001, 10107, 11600, 11602,
                             13435, 13436})
#: Why a record was refused for good, by server code. Only these are permanent.
PERMANENT_REASONS = {121: "validation", 10334: "too_large", 17419: "too_large", 2: "invalid_document",
                     14: "invalid_document", 22: "invalid_document", 52: "invalid_document",
                     53: "invalid_document", 55: "invalid_document", 56: "invalid_document", 73: "invalid_namespace"}


def code_reason(code: int | None, labels: tuple[str, ...] = ()) -> str | None:
    """The permanent reason of a server error code, None when it is not a refusal of the data."""
    if code is None or code in TRANSIENT_CODES or "RetryableWriteError" in labels:
        return None
    return PERMANENT_REASONS.get(code)


def refusal_reason(exc: BaseException) -> str | None:
    """Why the server (or the driver) refused this data for good; None for anything that may succeed later."""
    if isinstance(exc, DocumentTooLarge):
        return "too_large"
    if isinstance(exc, InvalidDocument):
        return "invalid_document"
    if isinstance(exc, OperationFailure) and not isinstance(exc, BulkWriteError):
        labels = tuple(label for label in ("RetryableWriteError",) if exc.has_error_label(label))
        return code_reason(exc.code, labels)
    return None


def is_outage(exc: BaseException) -> bool:
    """Whether the error means the store cannot serve now (see the module doc)."""
    if isinstance(exc, StoreUnavailable):
        return True
    if isinstance(exc, ConnectionFailure | ExecutionTimeout | WTimeoutError | TimeoutError | OSError):
        return True  # ConnectionFailure covers AutoReconnect, NotPrimaryError, NetworkTimeout, selection timeouts
    if isinstance(exc, OperationFailure):
        labels = ("RetryableWriteError",) if exc.has_error_label("RetryableWriteError") else ()
        return exc.code in TRANSIENT_CODES or bool(labels)
    return False


def translate(exc: BaseException, what: str) -> StoreError:
    """The typed error for a driver error; messages name the operation and a code, never the server's text."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, DuplicateKeyError):
        return Conflict(f"{what}: a document with the same identity exists", store="mongo")
    if is_outage(exc):
        code = getattr(exc, "code", None)
        detail = f"code {code}" if isinstance(exc, OperationFailure) else type(exc).__name__
        return StoreUnavailable(f"{what}: MongoDB cannot serve now ({detail})", store="mongo")
    reason = refusal_reason(exc)
    if reason is not None:
        return InvalidData(f"{what}: MongoDB refused the document ({reason})", store="mongo")
    if isinstance(exc, OperationFailure):
        return StoreError(f"{what}: MongoDB refused the operation (code {exc.code})", store="mongo")
    if isinstance(exc, PyMongoError):
        return StoreUnavailable(f"{what}: MongoDB error ({type(exc).__name__})", store="mongo")
    return StoreError(f"{what}: MongoDB call failed ({type(exc).__name__})", store="mongo")
