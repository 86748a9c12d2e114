"""Credentials of the local stack: generated once per `.local/`, never committed."""

from __future__ import annotations

import json
import os
import secrets
import threading
from pathlib import Path

from config.errors import StackError
from config.paths import local_dir

_NAMES = (
    "postgres_superuser", "postgres_replicator", "postgres_app", "postgres_agent_ro", "postgres_agent_log",
    "postgres_ferretdb", "postgres_ferretdb_reader",
    "redis_default", "redis_agent", "redis_admin", "redis_replication", "minio_root", "token_signing_key",
    "field_encryption_master_key",
    "minio_kms_key",
    # S3: per-principal MinIO passwords are derived from this key; the audit webhook's bearer token
    "minio_principal_key", "minio_audit_token",
    # backups (ops-backups): pgBackRest's repository passphrase; Redis user that may take RDB snapshots
    "pgbackrest_cipher_pass", "redis_backup",
    # monitoring: the exporters' own least-privilege logins
    "postgres_exporter", "redis_exporter",
)


_LOCK = threading.Lock()

def secrets_file() -> Path:
    return local_dir() / "secrets.json"


def data_made_with_secrets(root: Path | None = None) -> list[str]:
    """Data dirs under `root` whose contents were created with the secrets: PostgreSQL clusters (role
    passwords, encrypted PII fields) and MinIO data (root credentials, objects under the KMS key)."""
    root = root or local_dir()
    found: list[str] = []
    if root.is_dir():
        for sub in sorted(root.iterdir()):
            if (sub / "pgdata" / "PG_VERSION").exists() or (sub / "data" / ".minio.sys").exists():
                found.append(sub.name)
    return found


def _refuse(path: Path, problem: str, found: list[str]) -> StackError:
    return StackError(
        f"{path} {problem}, but {path.parent} holds data created with the secrets it had "
        f"({', '.join(found)}). New secrets would not open them: the PostgreSQL roles would refuse the new "
        f"passwords and MinIO would get a new KMS key (its encrypted objects unreadable). Restore {path} "
        "from a backup, or wipe the local data with `kredete stack reset --yes` (deletes the data under "
        f"{path.parent}; caches are kept) and run `kredete stack up` again."
    )


def local_secrets() -> dict[str, str]:
    """Load the local stack's secrets, creating any that are missing (file mode 0600).

    Missing secrets are only made for a `.local/` without data: when `secrets.json` is gone (or
    unreadable) while a cluster or MinIO data exists, this refuses instead of silently making new ones.
    """
    with _LOCK:  # servers start in parallel threads: one of them makes the file, the others read it
        return _load_or_create()


def _load_or_create() -> dict[str, str]:
    path = secrets_file()
    data: dict[str, str] = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            found = data_made_with_secrets(path.parent)
            if found:
                raise _refuse(path, f"is unreadable ({type(exc).__name__})", found) from exc
            raise StackError(f"{path} is unreadable ({type(exc).__name__}): restore it or delete it "
                             "(no local data depends on it yet)") from exc
    else:
        found = data_made_with_secrets(path.parent)
        if found:
            raise _refuse(path, "is missing", found)
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


def derived_secret(purpose: str) -> str:
    """A stable secret for `purpose` (e.g. one MinIO principal's password), derived from a local secret,
    so adding a principal needs no new entry in `secrets.json`."""
    import base64
    import hashlib
    import hmac

    key = local_secrets()["minio_principal_key"].encode()
    return base64.urlsafe_b64encode(hmac.digest(key, purpose.encode(), hashlib.sha256)).decode().rstrip("=")
