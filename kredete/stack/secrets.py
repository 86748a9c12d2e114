"""Credentials of the local stack: generated once per `.local/`, never committed."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from kredete.paths import local_dir

_NAMES = (
    "postgres_superuser", "postgres_replicator", "postgres_app", "postgres_agent_ro", "postgres_agent_log",
    "postgres_ferretdb",
    "redis_default", "redis_agent", "minio_root", "token_signing_key", "field_encryption_master_key",
    "minio_kms_key",
)


def secrets_file() -> Path:
    return local_dir() / "secrets.json"


def local_secrets() -> dict[str, str]:
    """Load the local stack's secrets, creating any that are missing (file mode 0600)."""
    path = secrets_file()
    data: dict[str, str] = {}
    if path.exists():
        data = json.loads(path.read_text())
    missing = [n for n in _NAMES if n not in data]
    if missing:
        for name in missing:
            data[name] = secrets.token_urlsafe(32)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        os.chmod(tmp, 0o600)
        tmp.replace(path)
    return data
