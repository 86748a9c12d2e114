"""The `lean` stack profile (size runs): the default profile's servers without the streaming replicas and WAL
archiving, and every read URL on the primary.

Pure functions of the environment and a scratch `.local/` (no server is started).
"""

from __future__ import annotations

import pytest

from config import ports
from config.settings import reset_settings, resolve

REPLICAS = {"postgres-replica", "postgres-replica2"}


@pytest.fixture
def profile(tmp_path, monkeypatch):
    monkeypatch.setenv("KREDETE_LOCAL_DIR", str(tmp_path / "local"))
    for var in ("POSTGRES_URL", "POSTGRES_REPLICA_URL", "POSTGRES_AGENT_URL", "POSTGRES_AGENT_REPLICA_URL",
                "MONGO_URL", "REDIS_URL", "OPENSEARCH_URL", "S3_URL", "STACK_PROFILE"):
        monkeypatch.delenv(f"KREDETE_{var}", raising=False)

    def use(name: str) -> None:
        monkeypatch.setenv("KREDETE_STACK_PROFILE", name)
        reset_settings()

    yield use
    reset_settings()


def _planned(profile_name: str | None = None) -> list[str]:
    from kredete import stack

    return [s.name for s in stack.plan(profile_name=profile_name)[0]]


def test_lean_runs_the_default_servers_but_the_replicas_and_their_exporters(profile):
    profile("lean")
    lean, default = _planned(), _planned("default")
    assert "postgres" in lean and "postgres-exporter" in lean
    assert not REPLICAS & set(lean)
    assert set(default) - set(lean) == REPLICAS | {f"{r}-exporter" for r in REPLICAS}
    assert [n for n in default if n in lean] == lean  # same start order otherwise
    for name in ("redis", "mongo", "opensearch", "s3", "prometheus"):
        assert name in lean


def test_lean_reads_go_to_the_primary_and_no_url_names_a_replica_port(profile):
    profile("lean")
    s = resolve()
    assert s.postgres_replica_url.get_secret_value() == s.postgres_url.get_secret_value()
    assert s.postgres_agent_replica_url.get_secret_value() == s.postgres_agent_url.get_secret_value()
    urls = [getattr(s, k).get_secret_value() for k in ("postgres_url", "postgres_replica_url", "postgres_agent_url",
                                                         "postgres_agent_replica_url", "postgres_log_url")]
    assert all(f":{ports.POSTGRES}/" in u for u in urls)
    assert not any(f":{p}" in u for u in urls for p in (ports.POSTGRES_REPLICA, ports.POSTGRES_REPLICA2))
    profile("default")  # the default profile still reads on its two replicas
    replica = resolve().postgres_replica_url.get_secret_value()
    assert f":{ports.POSTGRES_REPLICA}," in replica and f":{ports.POSTGRES_REPLICA2}/" in replica


def test_a_replica_url_that_is_the_primarys_opens_no_replica_pool(profile):
    from stores.registry import build_postgres

    profile("lean")
    assert build_postgres(resolve()).replicas == []
    assert build_postgres(resolve(), role="agent").replicas == []
    profile("default")
    assert len(build_postgres(resolve()).replicas) == 2


def test_the_lean_primary_never_archives_wal(profile):
    from kredete import stack
    from kredete.stack.postgres import PostgresPrimary

    profile("lean")
    primary = next(s for s in stack.all_servers() if s.name == "postgres")
    assert isinstance(primary, PostgresPrimary) and primary.archive is False
    assert PostgresPrimary().archive is False  # also one made elsewhere (a drill, a restore) under this profile
    assert next(s for s in stack.all_servers("default") if s.name == "postgres").archive is True
    # a .local/ that a default stack once archived from: the lean start drops its archive settings
    primary.archive_conf.parent.mkdir(parents=True)
    primary.archive_conf.write_text("archive_mode = on\n")
    argv, _ = primary.command()
    assert not primary.archive_conf.exists()
    assert argv[-2:] == ["-p", str(ports.POSTGRES)]


def test_stack_commands_accept_the_lean_profile(profile):
    from kredete import stack

    profile("default")
    stack.use_profile("lean")
    assert stack.profile() == "lean"
    with pytest.raises(stack.StackError, match="lean"):  # the refusal lists the known profiles
        stack.use_profile("tiny")
