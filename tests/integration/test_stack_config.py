"""Configuration coherence: partial URL overrides, and a `.local/` whose secrets went missing.

No server is started here: resolve() and the stack's plan are pure functions of the environment and
`.local/` (a scratch KREDETE_LOCAL_DIR each time, so the shared stack's secrets are never touched).
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from config.errors import ConfigError
from config.settings import reset_settings, resolve

EXTERNAL_PG = "postgresql://svc:s3cret-pw@db.example.com:5432/payments"
URL_VARS = ("POSTGRES_URL", "POSTGRES_REPLICA_URL", "POSTGRES_AGENT_URL", "POSTGRES_AGENT_REPLICA_URL",
            "POSTGRES_LOG_URL", "MONGO_URL", "REDIS_URL", "REDIS_AGENT_URL", "OPENSEARCH_URL", "S3_URL",
            "S3_DR_URL", "S3_ACCESS_KEY", "S3_SECRET_KEY")


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A clean environment (no store URL set) over a scratch `.local/`; returns a setter."""
    monkeypatch.setenv("KREDETE_LOCAL_DIR", str(tmp_path / "local"))
    for var in URL_VARS:
        monkeypatch.delenv(f"KREDETE_{var}", raising=False)
    reset_settings()

    def set_env(**values: str) -> None:
        for key, value in values.items():
            monkeypatch.setenv(f"KREDETE_{key.upper()}", value)
        reset_settings()

    yield set_env
    reset_settings()


#: The monitoring servers of the plan, in start order: an exporter per local PostgreSQL server, then the rest.
PG_EXPORTERS = ["postgres-exporter", "postgres-replica-exporter", "postgres-replica2-exporter"]
MONITORING = ["redis-exporter", "collector", "alertmanager", "prometheus"]

def _planned(only=None):
    from kredete import stack

    run, not_run = stack.plan(only)
    return [s.name for s in run], {s.name: s for s in not_run}


# --- resolve() -------------------------------------------------------------------------------------------

def test_nothing_set_means_the_whole_local_stack(env):
    from config import ports

    s = resolve()
    assert f":{ports.POSTGRES}/" in s.postgres_url.get_secret_value()
    assert f"127.0.0.1:{ports.POSTGRES_REPLICA},127.0.0.1:{ports.POSTGRES_REPLICA2}/" in \
        s.postgres_replica_url.get_secret_value(), "reads spread over both replicas (multi-host URL)"
    assert "kredete_agent_ro" in s.postgres_agent_url.get_secret_value()
    assert s.s3_secret_key is not None and s.s3_dr_url is not None
    run, not_run = _planned()
    assert run == ["postgres", "postgres-replica", "postgres-replica2", "redis", "mongo", "opensearch", "s3-audit",
                   "s3-cold", "s3", "s3-dr", *PG_EXPORTERS, *MONITORING]
    assert not not_run


def test_external_primary_reads_on_the_primary_and_roles_are_not_pointed_at_the_local_stack(env):
    env(postgres_url=EXTERNAL_PG)
    s = resolve()
    assert s.postgres_url.get_secret_value() == EXTERNAL_PG
    assert s.postgres_replica_url.get_secret_value() == EXTERNAL_PG, "reads go to the primary"
    for field, var in (("postgres_agent_url", "KREDETE_POSTGRES_AGENT_URL"),
                       ("postgres_agent_replica_url", "KREDETE_POSTGRES_AGENT_URL"),
                       ("postgres_log_url", "KREDETE_POSTGRES_LOG_URL"),
                       ("mongo_url", "KREDETE_MONGO_URL")):
        with pytest.raises(ConfigError, match=var):
            getattr(s, field).get_secret_value()
    # the stores that do not depend on Postgres still default to the local stack
    assert "127.0.0.1" in s.redis_url.get_secret_value()


def test_external_primary_with_role_urls(env):
    agent = "postgresql://ro:pw1@db.example.com:5432/payments"
    log = "postgresql://log:pw2@db.example.com:5432/payments"
    replica = "postgresql://svc:s3cret-pw@replica.example.com:5432/payments"
    env(postgres_url=EXTERNAL_PG, postgres_replica_url=replica, postgres_agent_url=agent, postgres_log_url=log,
        mongo_url="mongodb://mongo.example.com/")
    s = resolve()
    assert s.postgres_replica_url.get_secret_value() == replica
    assert s.postgres_agent_url.get_secret_value() == agent
    assert s.postgres_agent_replica_url.get_secret_value() == agent, "agent reads on the agent's primary"
    assert s.postgres_log_url.get_secret_value() == log
    assert resolve(s) == s, "resolving twice changes nothing"


def test_replica_url_without_the_primary_is_refused(env):
    from kredete import stack

    env(postgres_replica_url="postgresql://x:pw@elsewhere.example.com:5432/db")
    expected = "KREDETE_POSTGRES_REPLICA_URL is set but KREDETE_POSTGRES_URL is not"
    with pytest.raises(ConfigError, match=expected):
        resolve()
    with pytest.raises(stack.StackError, match=expected):  # `stack up` / `stack status` refuse it too
        stack.plan()


def test_a_role_url_next_to_the_local_primary_is_used_as_given(env):
    dead_log = "postgresql://kredete_agent_log:x@127.0.0.1:1/kredete"  # e.g. an audit writer made unreachable
    env(postgres_log_url=dead_log)
    s = resolve()
    assert s.postgres_log_url.get_secret_value() == dead_log
    assert "127.0.0.1" in s.postgres_url.get_secret_value()


def test_external_redis_needs_its_agent_url(env):
    env(redis_url="redis://svc:pw@cache.example.com:6379/0")
    with pytest.raises(ConfigError, match="KREDETE_REDIS_AGENT_URL"):
        resolve().redis_agent_url.get_secret_value()


def test_external_s3_gets_no_local_credentials_and_no_local_dr(env):
    env(s3_url="https://s3.eu-west-1.amazonaws.com")
    s = resolve()
    assert s.s3_access_key is None and s.s3_secret_key is None, "botocore's default credential chain"
    assert s.s3_dr_url is None
    run, not_run = _planned()
    assert not {"s3", "s3-dr", "s3-cold", "s3-audit"} & set(run)
    assert "no DR region" in not_run["s3-dr"].reason


# --- which servers `stack up` starts -------------------------------------------------------------------

def test_stack_up_plan_with_an_external_primary(env):
    env(postgres_url=EXTERNAL_PG)
    run, not_run = _planned()
    assert run == ["redis", "opensearch", "s3-audit", "s3-cold", "s3", "s3-dr", *MONITORING]
    assert "reads go to the external primary" in not_run["postgres-replica"].reason
    # No local exporter for an external store: its managed service's monitoring applies.
    assert "managed service's own monitoring" in not_run["postgres-exporter"].reason
    assert "managed service's own monitoring" in not_run["postgres-replica-exporter"].reason
    assert not_run["mongo"].refused and "KREDETE_MONGO_URL" in not_run["mongo"].reason
    assert "s3cret-pw" not in not_run["postgres"].reason

    env(postgres_url=EXTERNAL_PG, mongo_url="mongodb://mongo.example.com/")
    run, not_run = _planned()
    assert run == ["redis", "opensearch", "s3-audit", "s3-cold", "s3", "s3-dr", *MONITORING]
    assert not any(s.refused for s in not_run.values())


def test_stack_up_refuses_a_server_that_depends_on_an_external_store(env):
    from kredete import stack

    env(postgres_url=EXTERNAL_PG)
    with pytest.raises(stack.StackError) as info:
        stack.up(["mongo"])
    assert "mongo: not started" in str(info.value) and "KREDETE_MONGO_URL" in str(info.value)
    # the replica is not started either: there is no local primary for it to follow
    assert stack.up(["postgres-replica"]) == []


def test_up_only_starts_dependencies_first(env):
    from kredete.stack import _with_dependencies

    assert _with_dependencies(["mongo"]) == ["postgres", "mongo"]
    assert _with_dependencies(["postgres-replica", "redis"]) == ["postgres", "postgres-replica", "redis"]


def test_stack_status_says_where_reads_go(env):
    from kredete.cli import app

    env(postgres_url=EXTERNAL_PG, mongo_url="mongodb://mongo.example.com/")
    res = CliRunner().invoke(app, ["stack", "status", "--only", "postgres", "--only", "postgres-replica"])
    out = " ".join(res.output.split())
    assert "reads go to the external primary" in out
    assert "s3cret-pw" not in out


# --- a .local/ without its secrets -------------------------------------------------------------------------

def _fake_cluster(local, name="postgres"):
    pgdata = local / name / "pgdata"
    pgdata.mkdir(parents=True)
    (pgdata / "PG_VERSION").write_text("15\n")


def test_fresh_local_dir_gets_new_secrets(env, tmp_path):
    from config.secrets import local_secrets, secrets_file

    sec = local_secrets()
    assert secrets_file().exists() and oct(secrets_file().stat().st_mode & 0o777) == "0o600"
    assert local_secrets() == sec


@pytest.mark.parametrize("data", ["postgres", "s3"])
def test_missing_secrets_with_existing_data_is_refused(env, tmp_path, data):
    from config.secrets import local_secrets, secrets_file
    from kredete.stack.base import StackError

    local = tmp_path / "local"
    if data == "postgres":
        _fake_cluster(local)
    else:
        (local / "s3" / "data" / ".minio.sys").mkdir(parents=True)
    with pytest.raises(StackError) as info:
        local_secrets()
    msg = str(info.value)
    assert "secrets.json is missing" in msg and data in msg
    assert "Restore" in msg and "kredete stack reset --yes" in msg
    assert not secrets_file().exists(), "no new secrets were made"
    with pytest.raises(StackError, match=r"secrets\.json is missing"):
        resolve()


def test_unreadable_secrets_with_existing_data_is_refused(env, tmp_path):
    from config.secrets import local_secrets, secrets_file
    from kredete.stack.base import StackError

    local = tmp_path / "local"
    _fake_cluster(local)
    secrets_file().write_text("{not json")
    with pytest.raises(StackError, match="unreadable"):
        local_secrets()
    assert secrets_file().read_text() == "{not json"


def test_reset_works_without_secrets_and_then_secrets_are_made_again(env, tmp_path):
    from config.secrets import local_secrets, secrets_file
    from kredete.cli import app

    local = tmp_path / "local"
    _fake_cluster(local)
    _fake_cluster(local, "postgres-replica")
    res = CliRunner().invoke(app, ["stack", "status", "--only", "postgres"])
    # rich wraps the long tmp path mid-word (where depends on pytest's tmp dir number): compare without blanks.
    assert res.exit_code == 1 and "secrets.jsonismissing" in "".join(res.output.split()), res.output
    res = CliRunner().invoke(app, ["stack", "reset", "--yes", "--only", "postgres", "--only", "postgres-replica"])
    assert res.exit_code == 0, res.output
    assert not (local / "postgres").exists()
    assert local_secrets() and json.loads(secrets_file().read_text())
