"""The retention policy file: it loads, each dataset has a handler, and the S3 entries say what the buckets do."""

from __future__ import annotations

import pytest

from config.errors import ConfigError
from config.retention import load_policy
from config.settings import Settings
from services.retention import Item, RetentionService

HANDLED = {"postgres.audit_logs", "postgres.sessions", "postgres.idempotency_keys", "redis"}


def test_the_policy_loads_and_every_enforced_dataset_has_a_handler():
    policy = load_policy()
    for ds in policy.dataset:
        if ds.enforced_by == "none":
            assert ds.action == "keep" and ds.why
        else:
            assert ds.name in HANDLED or ds.name.startswith(("mongo.", "opensearch.", "s3.")), ds.name


def test_s3_entries_match_the_bucket_specs():
    svc = RetentionService(Settings(), load_policy())
    for ds in load_policy().dataset:
        if ds.name.startswith("s3."):
            item = Item(ds.name, ds.action, ds.enforced_by, "")
            svc._s3(ds, item)  # raises on a difference
            assert item.what


def test_a_drifted_or_broken_policy_is_refused(tmp_path):
    from config.retention import Dataset
    from stores.errors import InvalidData

    drifted = Dataset(name="s3.logs-archive/s3-access", action="delete", days=30, enforced_by="server",
                      why="an access-log year shortened on paper only")
    with pytest.raises(InvalidData, match="does not expire after 30 days"):
        RetentionService(Settings(), load_policy())._s3(drifted, Item(drifted.name, "delete", "server", ""))
    bad = tmp_path / "p.toml"
    bad.write_text('[[dataset]]\nname = "postgres.audit_logs"\naction = "archive"\ndays = 10\n'
                   'enforced_by = "retention"\nwhy = "no archive days given here"\n')
    with pytest.raises(ConfigError, match="archive needs"):
        load_policy(bad)
