"""OpenSearch adapter (opensearch-py async) with bounded timeouts and typed errors."""

from __future__ import annotations

from typing import Any

from opensearchpy import AsyncOpenSearch
from opensearchpy.exceptions import (
    AuthenticationException,
    AuthorizationException,
    ConflictError,
    ConnectionError,
    ConnectionTimeout,
    ImproperlyConfigured,
    NotFoundError,
    RequestError,
    TransportError,
)

from stores.breaker import Breaker
from stores.errors import Conflict, InvalidData, NotFound, StoreConfigError, StoreUnavailable, redact_url


class SearchStore:
    """An AsyncOpenSearch client; index names carry a prefix so environments can share a cluster.

    Every `call` passes `breaker` (named `name`): refused at once after consecutive failures to get an answer,
    until a probe (`_cluster/health`, green or yellow) succeeds.
    """

    def __init__(self, url: str, *, timeout: float = 10.0, prefix: str = "kredete", name: str = "opensearch") -> None:
        self._url = url
        self._timeout = timeout
        self.prefix = prefix
        self.client: AsyncOpenSearch | None = None
        self.breaker = Breaker(name, probe=self._probe)

    async def connect(self) -> SearchStore:
        try:
            self.client = self._new_client()
        except ValueError as exc:
            raise StoreConfigError(f"malformed OpenSearch URL {redact_url(self._url)}", store="opensearch") from exc
        try:
            await self.health()
        except BaseException:
            await self.close()
            raise
        return self

    def _new_client(self) -> AsyncOpenSearch:
        return AsyncOpenSearch(hosts=[self._url], timeout=self._timeout, max_retries=1,
                               retry_on_timeout=False, http_compress=True)

    @property
    def os(self) -> AsyncOpenSearch:
        if self.client is None:
            # Down at start: the client connects lazily, so a node that comes back is used; a call to a
            # node that is still down fails in `call()` with StoreUnavailable.
            self.client = self._new_client()
        return self.client

    def index_name(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    async def call(self, coro: Any) -> Any:
        """Await an opensearch-py call, mapping its errors onto typed store errors (refused at once while the
        breaker is open; an error that is not an answer of OpenSearch counts towards opening it)."""
        try:
            self.breaker.check()
        except StoreUnavailable:
            if hasattr(coro, "close"):
                coro.close()  # never awaited: the request is not sent
            raise
        with self.breaker.guard(lambda exc: isinstance(exc, StoreUnavailable)):
            return await self._typed(coro)

    async def _probe(self) -> None:
        health = await self._typed(self.os.cluster.health())
        if health.get("status") not in ("green", "yellow"):
            raise StoreUnavailable(f"OpenSearch cluster is {health.get('status')}", store="opensearch")

    async def _typed(self, coro: Any) -> Any:
        try:
            return await coro
        except NotFoundError as exc:
            raise NotFound("index or document not found", store="opensearch") from exc
        except RequestError as exc:
            reason = _reason(exc)
            raise InvalidData(f"OpenSearch rejected the request: {reason}", store="opensearch") from exc
        except AuthenticationException as exc:
            raise StoreConfigError("OpenSearch refused the credentials (HTTP 401)", store="opensearch") from exc
        except AuthorizationException as exc:
            raise StoreConfigError("OpenSearch refused the request for these credentials (HTTP 403)",
                                   store="opensearch") from exc
        except ConflictError as exc:
            raise Conflict("OpenSearch version conflict (HTTP 409)", store="opensearch") from exc
        except ConnectionTimeout as exc:
            raise StoreUnavailable(f"OpenSearch at {redact_url(self._url)} did not answer in {self._timeout:g}s",
                                   store="opensearch") from exc
        except ConnectionError as exc:
            raise StoreUnavailable(f"OpenSearch at {redact_url(self._url)} is unreachable",
                                   store="opensearch") from exc
        except TransportError as exc:
            status = exc.status_code if isinstance(exc.status_code, int) else 0
            if 400 <= status < 500 and status != 429:
                raise InvalidData(f"OpenSearch rejected the request (HTTP {status})", store="opensearch") from exc
            raise StoreUnavailable(f"OpenSearch error {exc.status_code}", store="opensearch") from exc
        except ImproperlyConfigured as exc:
            raise StoreConfigError("OpenSearch client is misconfigured", store="opensearch") from exc

    async def health(self) -> dict[str, object]:
        info = await self.call(self.os.info())
        health = await self.call(self.os.cluster.health())
        plugins = await self.call(self.os.cat.plugins(format="json"))
        return {"ok": health.get("status") in ("green", "yellow"), "status": health.get("status"),
                "version": info["version"]["number"],
                "knn": any(p.get("component") == "opensearch-knn" for p in plugins)}

    async def close(self) -> None:
        await self.breaker.close()
        if self.client is not None:
            await self.client.close()
            self.client = None


def _reason(exc: TransportError) -> str:
    info = exc.info if isinstance(exc.info, dict) else {}
    err = info.get("error", {})
    if isinstance(err, dict):
        root = (err.get("root_cause") or [{}])[0]
        return str(root.get("reason") or err.get("reason") or exc.error)[:300]
    return str(exc.error)[:300]
