"""Settings from the environment (pydantic-settings). An unset store URL means the local stack."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


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

    connect_timeout_s: float = Field(5.0, gt=0, le=120)
    statement_timeout_ms: int = Field(5000, gt=0)
    index_prefix: str = "kredete"
    #: Credit store: conversation/prompt logs expire after this many days; the MCP server runs the retention
    #: and outbox-reconciliation jobs every so many seconds (0 = off), reconciling this far back.
    log_retention_days: float = Field(90.0, gt=0, le=3660)
    mongo_retention_interval_s: float = Field(60.0, ge=0, le=86_400)
    outbox_reconcile_interval_s: float = Field(300.0, ge=0, le=86_400)
    outbox_reconcile_lookback_s: float = Field(3600.0, gt=0, le=30 * 86_400)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    get_settings.cache_clear()


def resolve(settings: Settings | None = None) -> Settings:
    """Return settings whose unset URLs and keys point at the local stack."""
    from kredete.stack import ports
    from kredete.stack.secrets import local_secrets

    s = settings or get_settings()
    fill: dict[str, object] = {}
    needs_local = any(getattr(s, f) is None for f in (
        "postgres_url", "postgres_replica_url", "postgres_agent_url", "postgres_agent_replica_url",
        "postgres_log_url", "mongo_url", "redis_url", "redis_agent_url", "opensearch_url", "s3_url",
        "s3_access_key", "s3_secret_key", "token_signing_key", "field_encryption_master_key"))
    if not needs_local:
        return s
    sec = local_secrets()

    def pg(user: str, secret: str, port: int) -> SecretStr:
        return SecretStr(f"postgresql://{user}:{sec[secret]}@127.0.0.1:{port}/{s.postgres_db}")

    defaults: dict[str, object] = {
        "postgres_url": pg("kredete", "postgres_superuser", ports.POSTGRES),
        "postgres_replica_url": pg("kredete", "postgres_superuser", ports.POSTGRES_REPLICA),
        "postgres_agent_url": pg("kredete_agent_ro", "postgres_agent_ro", ports.POSTGRES),
        "postgres_agent_replica_url": pg("kredete_agent_ro", "postgres_agent_ro", ports.POSTGRES_REPLICA),
        "postgres_log_url": pg("kredete_agent_log", "postgres_agent_log", ports.POSTGRES),
        "mongo_url": SecretStr(f"mongodb://127.0.0.1:{ports.MONGO}/"),
        "redis_url": SecretStr(f"redis://kredete:{sec['redis_default']}@127.0.0.1:{ports.REDIS}/0"),
        "redis_agent_url": SecretStr(f"redis://agent:{sec['redis_agent']}@127.0.0.1:{ports.REDIS}/0"),
        "opensearch_url": SecretStr(f"http://127.0.0.1:{ports.OPENSEARCH}"),
        "s3_url": f"http://127.0.0.1:{ports.S3}",
        "s3_dr_url": f"http://127.0.0.1:{ports.S3_DR}",
        "s3_access_key": SecretStr("kredete"),
        "s3_secret_key": SecretStr(sec["minio_root"]),
        "token_signing_key": SecretStr(sec["token_signing_key"]),
        "field_encryption_master_key": SecretStr(sec["field_encryption_master_key"]),
    }
    for key, value in defaults.items():
        if getattr(s, key) is None:
            fill[key] = value
    return s.model_copy(update=fill)
