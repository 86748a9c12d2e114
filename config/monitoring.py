"""Monitoring settings: scrape cadence, alert thresholds, capacity limits (env prefix `KREDETE_`).

Thresholds are configuration, not code: the rule files in `monitoring/rules/` compare against
`kredete_alert_threshold{threshold="<name>"}` series that the local Prometheus records from these values, so
an operator changes a threshold without editing a rule. A value out of range is refused at start with the
variable's name (`monitoring_settings()` raises ConfigError).
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from config.errors import ConfigError

PREFIX = "KREDETE_"


class MonitoringSettings(BaseSettings):
    """Every monitoring knob; each threshold has a unit in its name."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, env_file=None, extra="ignore")

    # --- cadence ------------------------------------------------------------------------------------
    #: How often Prometheus scrapes every target and evaluates the rules.
    monitor_scrape_interval_s: float = Field(15.0, ge=0.5, le=300)
    monitor_evaluation_interval_s: float = Field(15.0, ge=0.5, le=300)
    #: Caps every rule's `for:` (a test or bench profile sets a few seconds); unset = the rule files' own.
    monitor_for_cap_s: float | None = Field(None, ge=0, le=3600)
    #: Alertmanager grouping: wait before the first notification of a group, and between updates.
    monitor_group_wait_s: float = Field(10.0, ge=0, le=600)
    monitor_group_interval_s: float = Field(60.0, ge=1, le=3600)
    #: The collector re-walks data dirs and re-lists buckets at most this often (everything else is live).
    monitor_storage_refresh_s: float = Field(60.0, ge=1, le=3600)
    #: Where Alertmanager posts notifications (unset: alerts stay in Alertmanager and `kredete ops status`).
    alert_webhook_url: str | None = Field(None, pattern=r"^https?://")
    #: Days Prometheus keeps samples.
    monitor_retention_days: int = Field(15, ge=1, le=3650)

    # --- alert thresholds -----------------------------------------------------------------------------
    alert_disk_used_ratio: float = Field(0.85, gt=0, lt=1)
    alert_disk_critical_ratio: float = Field(0.95, gt=0, lt=1)
    alert_replication_lag_bytes: int = Field(64 * 1024 * 1024, gt=0)
    alert_replication_lag_s: float = Field(30.0, gt=0)
    alert_slow_query_s: float = Field(1.0, gt=0, le=3600)
    #: A pool is saturated when this share of its connections is in use and callers wait for one.
    alert_pool_saturation_ratio: float = Field(1.0, gt=0, le=1)
    alert_outbox_lag_s: float = Field(300.0, gt=0)
    alert_search_sync_lag_s: float = Field(900.0, gt=0)
    alert_backup_age_h: float = Field(26.0, gt=0)
    alert_cache_hit_ratio_min: float = Field(0.8, ge=0, le=1)
    alert_opensearch_heap_ratio: float = Field(0.9, gt=0, le=1)
    alert_rate_limit_refusals_per_s: float = Field(1.0, gt=0)

    # --- capacity report ------------------------------------------------------------------------------
    capacity_growth_monthly: float = Field(0.15, ge=0, le=10)
    capacity_months: int = Field(24, ge=1, le=120)
    #: Limits from the spec: OpenSearch storage 500 GB, Redis memory 26 GB; the others are the managed
    #: services' configured storage (RDS allocated storage, Atlas M40 disk, no limit for S3).
    capacity_limit_opensearch_gb: float = Field(500.0, gt=0)
    capacity_limit_redis_gb: float = Field(26.0, gt=0)
    capacity_limit_postgres_gb: float = Field(1000.0, gt=0)
    capacity_limit_mongo_gb: float = Field(80.0, gt=0)

    @model_validator(mode="after")
    def _coherent(self) -> MonitoringSettings:
        if self.alert_disk_critical_ratio <= self.alert_disk_used_ratio:
            raise ValueError("KREDETE_ALERT_DISK_CRITICAL_RATIO must be above KREDETE_ALERT_DISK_USED_RATIO")
        return self

    def thresholds(self) -> dict[str, float]:
        """The alert thresholds by rule-file name (`alert_` stripped)."""
        return {name.removeprefix("alert_"): float(getattr(self, name))
                for name in type(self).model_fields if name.startswith("alert_") and name != "alert_webhook_url"}


def _variable(loc: tuple) -> str:
    return PREFIX + str(loc[0]).upper() if loc else "monitoring settings"


def load_monitoring_settings() -> MonitoringSettings:
    """Read and validate; a bad value is refused with the environment variable's name and the rule it broke."""
    try:
        return MonitoringSettings()
    except ValidationError as exc:
        problems = "; ".join(f"{_variable(e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
                             for e in exc.errors())
        raise ConfigError(f"monitoring settings refused: {problems}", store="config") from None


@lru_cache(maxsize=1)
def monitoring_settings() -> MonitoringSettings:
    return load_monitoring_settings()


def reset_monitoring_settings() -> None:
    monitoring_settings.cache_clear()
