"""The download route of sealed documents (`GET /documents/download?t=<token>` on the MCP HTTP server).

`get_document_link` hands the agent a link with a signed token (`services.document_tokens`); whoever holds it
gets, until it expires, the plaintext of that one document version: the token is verified, the version read as
the `documents` S3 principal, its owner metadata checked against the token's, the body opened with the owner's
data key and checked against its content-sha256. Answers are short plain text, never a stack trace: 403 for a
forged, altered or expired token, 404 for a version that is not (or no longer) the owner's, 410 once the owner
was erased (their key destroyed), 503 when a store is down.

Every request is one audit row (action `http:download_document`; the token's owner as actor, the object key as
resource, the link's request id; never the token or any content) and one count of
`kredete_document_downloads{outcome}`. As for tool calls, the plaintext is never served without its row.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from guards.call import new_call_state
from guards.metrics import AUDIT_FAILURES, DOCUMENT_DOWNLOADS, record_call
from guards.principal import Principal, Role
from services.document_tokens import DocumentGrant, LinkRefused
from services.documents import DocumentErased, DocumentNotFound
from stores.errors import StoreUnavailable

log = logging.getLogger("kredete.downloads")

ACTION = "http:download_document"
#: The audit rows' actor for a download: whoever holds a link the token's owner was given.
LINK_SUBJECT = "document-link"
LINK_ISSUER = "kredete-document-link"
_NOT_FILENAME = re.compile(r"[^A-Za-z0-9._-]")
_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def _text(status: int, message: str) -> Response:
    return PlainTextResponse(message + "\n", status_code=status, headers=_HEADERS)


async def serve_download(runtime: Any, request: Request) -> Response:
    """Answer one download request (`runtime`: the process's `AgentRuntime`, started)."""
    state = new_call_state(ACTION, {})
    grant: DocumentGrant | None = None
    outcome, status, message = "error", 500, "the document could not be served"
    response: Response | None = None
    try:
        documents = runtime.repos.documents
        grant = documents.verify(request.query_params.get("t", ""))
        state.principal = Principal(subject=LINK_SUBJECT, role=Role.CUSTOMER, user_id=grant.user_id,
                                    token_id=grant.link_id or "none", expires_at=grant.expires_at,
                                    issuer=LINK_ISSUER)
        state.resource = grant.key
        state.extra.update({"link_request_id": grant.link_id or None, "version_id": grant.version_id})
        opened = await documents.download(grant)
        filename = _NOT_FILENAME.sub("_", opened.filename) or "document"
        state.rows_returned = 1
        state.extra["bytes"] = len(opened.body)
        outcome, status, message = "served", 200, ""
        response = Response(opened.body, media_type=opened.content_type,
                            headers={**_HEADERS, "Content-Disposition": f'attachment; filename="{filename}"'})
    except LinkRefused as exc:
        outcome, status, message = exc.code, 403, exc.message
    except DocumentErased:
        outcome, status, message = "erased", 410, "document erased"
    except DocumentNotFound:
        outcome, status, message = "not_found", 404, "no such document"
    except StoreUnavailable as exc:
        log.warning("document download failed: %s", type(exc).__name__)
        outcome, status, message = "error", 503, "a data store is temporarily unavailable; try again shortly"
    except Exception as exc:  # an integrity failure or anything unforeseen: logged by type, never shown
        log.error("document download failed: %s", type(exc).__name__)
    state.decision = "allowed" if status == 200 else ("denied" if status in (403, 404, 410) else "error")
    state.reason = None if status == 200 else message
    state.extra.update({"outcome": outcome, "status": status})
    audited = await runtime.gate.audit(state)
    if not audited and status == 200:
        AUDIT_FAILURES.inc()  # fail closed: the plaintext is never served without its audit row
        outcome, status, state.decision = "unaudited", 503, "error"
        response = _text(503, "the download could not be audited, so nothing was served; try again shortly")
    DOCUMENT_DOWNLOADS.labels(outcome=outcome).inc()
    record_call(ACTION, state.decision, time.perf_counter() - state.started, {})
    return response if response is not None else _text(status, message)
