"""OpenSearch adapter (opensearch-py async) with bounded timeouts and typed errors.

The URL may list every node of a cluster (`http://a:9200,http://b:9200`): a call that cannot reach a node
(refused, reset) is retried on the next one, so losing a node costs no call while another answers.
"""

from __future__ import annotations

import gzip
import logging
from typing import Any, Literal
from urllib.parse import urlsplit

from opensearchpy import AIOHttpConnection, AsyncOpenSearch
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
from pydantic import BaseModel

from stores.breaker import Breaker
from stores.errors import Conflict, InvalidData, NotFound, StoreConfigError, StoreUnavailable, redact_url

log = logging.getLogger("kredete.search")

#: Error types OpenSearch answers when shards of an index have no active copy (a red index: the cluster
#: answers, other indexes may be fine) ...
_RED_INDEX = ("search_phase_execution_exception", "no_shard_available_action_exception",
              "unavailable_shards_exception", "primary_missing_action_exception")
#: ... or when the cluster has no manager (nothing can be served).
_NO_MANAGER = ("cluster_block_exception", "cluster_manager_not_discovered_exception",
               "master_not_discovered_exception")


class SearchUnavailable(StoreUnavailable):
    """Search cannot answer (no node reachable, or the index has no active shard copy: a red cluster).

    `public_message` is what an agent sees: search is down, the other tools are not.
    """

    store = "opensearch"

    def __init__(self, message: str, public: str, *, outage: bool = True) -> None:
        super().__init__(message)
        self.public_message = f"{public}; tools that do not need search still work"
        #: False for a red index the cluster answered about: an answer of the store, which must not open the
        #: whole store's circuit breaker (searches of the other indexes go on).
        self.outage = outage


class ClusterHealth(BaseModel):
    """`_cluster/health` of the cluster (or of one index) as the tools and the stack status show it."""

    cluster_name: str
    status: Literal["green", "yellow", "red"]
    number_of_nodes: int
    number_of_data_nodes: int
    active_shards: int
    relocating_shards: int = 0
    initializing_shards: int = 0
    unassigned_shards: int = 0
    timed_out: bool = False


def parse_hosts(url: str) -> list[str]:
    """Node URLs from one URL or a comma-separated list; raises ValueError on a malformed one."""
    hosts = [h.strip() for h in url.split(",") if h.strip()]
    if not hosts:
        raise ValueError("no OpenSearch URL")
    for h in hosts:
        parts = urlsplit(h)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("an OpenSearch URL must be http(s)://host[:port]")
        parts.port  # noqa: B018 - raises ValueError on a port out of range or not a number
    return hosts



class FastGzipConnection(AIOHttpConnection):
    """Request bodies gzipped at level 1 instead of the client's default 9: on bulk writes of vectors level 9 cost
    over 40 % of ingestion's CPU outside the encoder, for a body only ~9 % smaller than level 1's."""

    def _gzip_compress(self, body: Any) -> bytes:
        return gzip.compress(body if isinstance(body, bytes) else str(body).encode("utf-8"), compresslevel=1)

class SearchStore:
    """An AsyncOpenSearch client; index names carry a prefix so environments can share a cluster.

    `replicas` is the replica count of the indexes this store creates (None: `KREDETE_SEARCH_REPLICAS`,
    whose default follows the stack profile: 0 on one node, 1 on the three-node cluster).

    Every `call` passes `breaker` (named `name`): refused at once after consecutive failures to get an answer
    (no node reachable, timeouts, no cluster manager), until a probe (`_cluster/health` answered) succeeds.
    """

    def __init__(self, url: str, *, timeout: float = 10.0, prefix: str = "kredete",
                 replicas: int | None = None, name: str = "opensearch") -> None:
        self._url = url
        self._timeout = timeout
        self.prefix = prefix
        self.replicas = replicas
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
        hosts = parse_hosts(self._url)
        # Each node gets a try: a refused or reset connection marks that node dead for a while (the pool
        # tries it again later) and goes to the next. With several nodes a timeout is retried too: a node
        # that stopped answering (paused, partitioned) is as good as gone. A 503 is not retried: OpenSearch
        # answers it for a red index or a cluster without a manager, which another node cannot fix, and
        # the client would mark the healthy node that said so dead.
        return AsyncOpenSearch(hosts=hosts, timeout=self._timeout, max_retries=max(1, len(hosts)),
                               retry_on_timeout=len(hosts) > 1, retry_on_status=(502, 504), http_compress=True,
                               connection_class=FastGzipConnection)

    @property
    def shown_url(self) -> str:
        """The URL(s) for messages, passwords masked."""
        return ",".join(redact_url(h) for h in self._url.split(","))

    def replica_count(self) -> int:
        """Replicas of a new index: this store's own, else the settings'."""
        if self.replicas is not None:
            return self.replicas
        from config.settings import search_replicas

        return search_replicas()

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
        breaker is open; an error that is not an answer of OpenSearch counts towards opening it).

        A search or count that some shards could not answer (partial results) is an error too: an answer
        silently missing part of the index would look complete.
        """
        try:
            self.breaker.check()
        except StoreUnavailable:
            if hasattr(coro, "close"):
                coro.close()  # never awaited: the request is not sent
            raise
        with self.breaker.guard(lambda exc: isinstance(exc, StoreUnavailable) and getattr(exc, "outage", True)):
            return await self._typed(coro)

    async def _probe(self) -> None:
        # Any status the cluster answers with closes the breaker: a red index is reported by each search of
        # it (SearchUnavailable, not an outage), and must not keep the other indexes' searches refused.
        await self._typed(self.os.cluster.health())

    async def _typed(self, coro: Any) -> Any:
        try:
            res = await coro
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
            raise SearchUnavailable(f"OpenSearch at {self.shown_url} did not answer in {self._timeout:g}s",
                                    "search did not answer in time") from exc
        except ConnectionError as exc:
            raise SearchUnavailable(f"OpenSearch at {self.shown_url} is unreachable",
                                    "search is temporarily unavailable: no search node answers") from exc
        except TransportError as exc:
            status = exc.status_code if isinstance(exc.status_code, int) else 0
            if 400 <= status < 500 and status != 429:
                raise InvalidData(f"OpenSearch rejected the request (HTTP {status})", store="opensearch") from exc
            kind = _error_type(exc)
            if kind in _RED_INDEX or kind in _NO_MANAGER:
                raise SearchUnavailable(f"OpenSearch cannot serve the index ({kind}: {_reason(exc)}); the cluster "
                                        "is red or has no cluster manager: see `kredete stack status`",
                                        "search is unavailable: the search cluster has lost every copy of part "
                                        "of this index (status red)", outage=kind in _NO_MANAGER) from exc
            raise SearchUnavailable(f"OpenSearch error {exc.status_code} ({kind or 'unknown'})",
                                    "search is temporarily unavailable; try again shortly") from exc
        except ImproperlyConfigured as exc:
            raise StoreConfigError("OpenSearch client is misconfigured", store="opensearch") from exc
        if isinstance(res, dict) and ("hits" in res or "count" in res):
            shards = res.get("_shards") or {}
            if shards.get("failed"):
                raise SearchUnavailable(f"OpenSearch answered from {shards.get('successful')} of "
                                        f"{shards.get('total')} shards ({shards.get('failed')} failed); the "
                                        "cluster is red: see `kredete stack status`",
                                        "search is unavailable: the search cluster has lost every copy of part "
                                        "of this index (status red)", outage=False)
        return res

    async def cluster_health(self, index: str | None = None, *, wait_for: str | None = None,
                             timeout_s: float = 0) -> ClusterHealth:
        """Health of the cluster (or of `index`), optionally waiting up to `timeout_s` for a status."""
        params: dict[str, Any] = {}
        if wait_for:
            params.update(wait_for_status=wait_for, timeout=f"{timeout_s:g}s")
        res = await self.call(self.os.cluster.health(index=index, params=params,
                                                     request_timeout=max(self._timeout, timeout_s + 5)))
        return ClusterHealth.model_validate(res)

    async def warn_if_underreplicated(self, index: str) -> str | None:
        """Warn (log, and return the warning) when `index` cannot place its replicas on this cluster.

        An index asking for more copies than there are data nodes is created anyway: it stays yellow, serves
        reads and writes from its primaries, and turns green when enough nodes join.
        """
        replicas = self.replica_count()
        if replicas == 0:
            return None
        health = await self.cluster_health()
        if health.number_of_data_nodes > replicas:
            return None
        warning = (f"{index} asks for {replicas} replica(s), which needs {replicas + 1} data nodes; the cluster "
                   f"{health.cluster_name} has {health.number_of_data_nodes}. The index is yellow: its replicas stay "
                   "unassigned (no redundancy) until enough nodes join, or lower KREDETE_SEARCH_REPLICAS and run "
                   "`kredete search replicas`")
        log.warning("%s", warning)
        return warning

    async def set_replicas(self, pattern: str | None = None) -> dict[str, tuple[int, int]]:
        """Put this store's replica count on its existing indexes (`<prefix>-*` by default).

        Returns {index: (before, after)} for the indexes changed. Replica counts are dynamic: no reindex.
        """
        target = pattern or f"{self.prefix}-*"
        want = self.replica_count()
        res = await self.call(self.os.indices.get_settings(index=target, name="index.number_of_replicas",
                                                           expand_wildcards="open"))
        changed: dict[str, tuple[int, int]] = {}
        for index, body in sorted(res.items()):
            before = int(body["settings"]["index"]["number_of_replicas"])
            if before != want:
                await self.call(self.os.indices.put_settings(index=index,
                                                             body={"index": {"number_of_replicas": want}}))
                changed[index] = (before, want)
        if changed:
            await self.warn_if_underreplicated(target)
        return changed

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
            # The transport closes only the nodes it holds alive; one marked dead meanwhile keeps an open session.
            pool = self.client.transport.connection_pool
            for conn in getattr(pool, "orig_connections", ()):
                if conn not in getattr(pool, "connections", ()):
                    await conn.close()
            await self.client.close()
            self.client = None


def _error_type(exc: TransportError) -> str:
    info = exc.info if isinstance(exc.info, dict) else {}
    err = info.get("error", {})
    if isinstance(err, dict):
        return str(err.get("type") or "")
    return str(exc.error or "")


def _reason(exc: TransportError) -> str:
    info = exc.info if isinstance(exc.info, dict) else {}
    err = info.get("error", {})
    if isinstance(err, dict):
        root = (err.get("root_cause") or [{}])[0]
        return str(root.get("reason") or err.get("reason") or exc.error)[:300]
    return str(exc.error)[:300]
