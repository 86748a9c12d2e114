"""pgBackRest (Debian `pgbackrest`): the repository in the S3 backups bucket, WAL archiving of the primary.

* Repository: `s3://<prefix>-backups/pgbackrest/<system identifier>` over TLS (the local MinIO serves TLS
  itself, certificates from the local CA; pgBackRest trusts KREDETE_S3_CA_FILE), as the `backup_writer` S3
  principal (write, read, delete markers; never a version delete or a retention change), SSE-KMS with the
  server's key, encrypted by pgBackRest itself (`repo1-cipher-type=aes-256-cbc`, passphrase in
  `.local/secrets.json`).
  One path per cluster: a re-initialised primary never collides with the backups of the one before.
* Retention: `repo1-retention-full-type=time`, 35 days: `expire` (run after every backup) keeps every full
  backup needed to restore to any moment of the last 35 days, and the WAL those backups need.
* Object lock: the backups bucket has COMPLIANCE default retention (stores/objects/buckets.py). pgBackRest's
  expiry issues plain DELETEs: on a versioned, locked bucket they add delete markers, which the lock allows,
  so the repository view shrinks to 35 days while the locked versions stay until their lock ends (nobody, not
  even a stolen root key, can remove a backup earlier). The two agree as long as the lock is at least the
  pgBackRest retention (35 d <= the bucket's default): nothing pgBackRest still needs can ever be deleted.
* Secrets live only in `.local/pgbackrest/pgbackrest.conf` (mode 0600, owned by the server's user): never
  on a command line, in an environment variable of a long-lived process, or in a log.
* WAL archiving: `archive_command = pgbackrest ... archive-push %p` (asynchronous, 2 processes) with
  `archive_timeout` = KREDETE_ARCHIVE_TIMEOUT_S (15 s): a quiet primary still ships a segment every 15 s,
  which bounds the RPO of a restore from backups alone. A failed push fails the archive_command: PostgreSQL
  keeps the segment, retries, logs it, and counts it in `pg_stat_archiver` (failed_count, last_failed_wal);
  `kredete backup list` shows both.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from config.errors import StackError
from config.paths import local_dir
from config.secrets import local_secrets
from config.settings import resolve

STANZA = "kredete"
RETENTION_DAYS = 35
BIN = "/usr/bin/pgbackrest"


def home() -> Path:
    """Config, lock, log and spool of pgBackRest (the repository itself is in S3)."""
    return local_dir() / "pgbackrest"


def conf_file() -> Path:
    return home() / "pgbackrest.conf"


def log_dir() -> Path:
    return home() / "log"


def ensure_installed() -> None:
    if not Path(BIN).exists():
        from kredete.stack.base import apt_install

        apt_install("pgbackrest")


#: The PostgreSQL servers' system user (kredete/stack/postgres.py RUN_USER): pgBackRest must run as it.
#: (This module takes the primary as an argument and never imports postgres.py, which imports it.)
RUN_USER = "kredete"


def _run_user() -> str | None:
    return RUN_USER if os.geteuid() == 0 else None


def _chown(path: Path) -> None:
    user = _run_user()
    if user:
        shutil.chown(path, user, user)


def repository() -> dict[str, Any]:
    """Where the repository is and who writes it (raises StackError when S3 cannot hold it)."""
    from stores.objects.principals import credentials

    s = resolve()
    bucket = f"{s.s3_bucket_prefix}-backups"
    parts = urlsplit(s.s3_url or "")
    if parts.scheme != "https":
        raise StackError(f"KREDETE_S3_URL ({s.s3_url}) is not HTTPS: pgBackRest's S3 repository needs TLS")
    key, secret = credentials(s, "backup_writer")
    local = parts.hostname in ("127.0.0.1", "localhost")
    host = "localhost" if local else parts.hostname
    return {
        # pgBackRest 2.45 matches the host it connects to against the certificate's DNS names only, not its
        # IP addresses: locally that is `localhost` (the local CA's certificates name it and 127.0.0.1).
        "endpoint": host, "host": host,
        "port": parts.port or 443, "ca": s.s3_ca_file, "bucket": bucket, "region": s.s3_region,
        "key": key, "secret": secret, "local": local,
    }


def _ports():
    from config import ports

    return ports


def configured_cluster() -> str | None:
    """The system identifier the config's repository path belongs to (None: not configured yet)."""
    try:
        for line in conf_file().read_text().splitlines():
            if line.startswith("repo1-path=/pgbackrest/"):
                return line.rsplit("/", 1)[1]
    except OSError:
        return None
    return None


def write_config(primary, *, cluster: str | None = None, others: Sequence[Any] = ()) -> Path:
    """(Re)write pgbackrest.conf (0600) for the local primary; the repository path follows its cluster.

    `cluster` pins the repository path (a restore of a primary whose data dir is gone); by default it is
    the primary's system identifier, or the one configured before when the data dir is missing. `others`:
    the HA profile's other Patroni members (pg2, pg3): pgBackRest backs up from whichever is the primary.
    """
    sysid = cluster or primary.system_identifier() or configured_cluster()
    if not sysid:
        raise StackError("the primary has no cluster yet (`kredete stack up` creates it) and no repository "
                         "was configured before")
    repo = repository()
    sec = local_secrets()
    d = home()
    for sub in (d, d / "lock", d / "log", d / "spool"):
        sub.mkdir(parents=True, exist_ok=True)
        os.chmod(sub, 0o700)
        _chown(sub)
    lines = [
        "# Written by kredete/stack/pgbackrest.py; holds secrets: mode 0600, never commit or log it.",
        "[global]",
        "repo1-type=s3",
        f"repo1-s3-bucket={repo['bucket']}",
        f"repo1-s3-endpoint={repo['endpoint']}",
        f"repo1-storage-host={repo['host']}",
        f"repo1-storage-port={repo['port']}",
        f"repo1-s3-region={repo['region']}",
        "repo1-s3-uri-style=path",
        f"repo1-path=/pgbackrest/{sysid}",
    ]
    if repo["ca"]:
        lines.append(f"repo1-storage-ca-file={repo['ca']}")
    if repo["key"]:
        lines += [f"repo1-s3-key={repo['key']}", f"repo1-s3-key-secret={repo['secret']}"]
    else:  # no static keys for the principal: the instance role / default credential chain (AWS)
        lines.append("repo1-s3-key-type=auto")
    if repo["local"]:
        from stores.objects.buckets import LOCAL_KMS_KEY_ID

        lines.append(f"repo1-s3-kms-key-id={LOCAL_KMS_KEY_ID}")
    lines += [
        "repo1-cipher-type=aes-256-cbc",
        f"repo1-cipher-pass={sec['pgbackrest_cipher_pass']}",
        "repo1-retention-full-type=time",
        f"repo1-retention-full={RETENTION_DAYS}",
        "repo1-bundle=y",
        # An unreachable repository fails in seconds rather than after pgBackRest's default minute of retries.
        "io-timeout=10",
        "start-fast=y",
        "compress-type=lz4",
        "process-max=2",
        "archive-async=y",
        f"spool-path={d / 'spool'}",
        f"lock-path={d / 'lock'}",
        f"log-path={d / 'log'}",
        "log-level-file=info",
        "log-level-console=warn",
        "log-level-stderr=off",
        "",
        f"[{STANZA}]",
    ]
    for i, node in enumerate((primary, *others), start=1):
        lines += [f"pg{i}-path={node.pgdata}", f"pg{i}-port={node.port}", f"pg{i}-socket-path={node.data_dir}",
                  f"pg{i}-user=kredete"]
    lines.append("")
    path = conf_file()
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines))
    os.chmod(tmp, 0o600)
    _chown(tmp)
    tmp.replace(path)
    return path


def archive_command(pg_path: Path | None = None) -> str:
    """`archive_command`; `pg_path`: the pushing server's own data dir (a Patroni member: pgBackRest resolves %p
    against pg1-path, which names whichever member led when the config was written)."""
    own = f" --pg1-path={pg_path}" if pg_path else ""
    return f"{BIN} --config={conf_file()} --stanza={STANZA}{own} archive-push %p"


def archive_conf_text(archive_timeout_s: int) -> str:
    return (
        "# WAL archiving to the pgBackRest repository (kredete/stack/pgbackrest.py)\n"
        "archive_mode = on\n"
        f"archive_command = '{archive_command()}'\n"
        f"archive_timeout = {archive_timeout_s}\n"
    )


def write_archive_conf(primary) -> None:
    """The primary's archive settings, once its repository and stanza exist (`setup_repository`); before
    that the primary does not archive (no WAL piles up for a repository that is never made)."""
    cluster = primary.system_identifier()
    if not is_ready(cluster):
        primary.archive_conf.unlink(missing_ok=True)
        return
    s = resolve()
    write_config(primary)
    primary.archive_conf.write_text(archive_conf_text(int(s.archive_timeout_s)))
    _chown(primary.archive_conf)


def pgbackrest(*args: str, timeout: float = 3600, cluster: str | None = None,
               check: bool = True, **popen: Any) -> subprocess.CompletedProcess[str]:
    """Run `pgbackrest --config=... --stanza=kredete <args>` as the server's user; secrets stay in the file."""
    argv = [BIN, f"--config={conf_file()}", f"--stanza={STANZA}", *args]
    if cluster:
        argv.insert(2, f"--repo1-path=/pgbackrest/{cluster}")
    user = _run_user()
    if user:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--", *argv]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,
                              cwd=str(home()), **popen)
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"pgbackrest {args[0]} timed out after {timeout:.0f}s: the pgBackRest repository "
                         "(S3 backups bucket) is unreachable or too slow") from exc
    if check and proc.returncode != 0:
        raise StackError(explain(proc, args[0]))
    return proc


def explain(proc: subprocess.CompletedProcess[str], command: str) -> str:
    """A one-paragraph reason from pgBackRest's own output (its messages carry no secrets)."""
    out = (proc.stderr + proc.stdout).strip()
    lines = [ln.strip() for ln in out.splitlines() if "ERROR" in ln or "WARN" in ln] or out.splitlines()[-3:]
    text = " ".join(lines)[-1200:]
    hint = ""
    if any(k in text for k in ("unable to connect", "HostConnect", "Connection refused", "TLS", "timeout")):
        hint = " The pgBackRest repository (S3 backups bucket) is unreachable: is `kredete stack up` running s3?"
    elif "AccessDenied" in text or "InvalidAccessKeyId" in text or "[403]" in text:
        hint = (" S3 refused the backup_writer principal: run `kredete s3 setup` (it creates the principals and "
                "the backups bucket)")
    return f"pgbackrest {command} failed (exit {proc.returncode}): {text}{hint}"


def info(cluster: str | None = None) -> dict[str, Any]:
    """`pgbackrest info --output=json` for the stanza (backups, archive range, status)."""
    # Small files only: a short I/O timeout makes an unreachable repository fail fast (four files, retried).
    proc = pgbackrest("info", "--output=json", "--io-timeout=2", timeout=120, cluster=cluster)
    data = json.loads(proc.stdout or "[]")
    if not data:
        raise StackError("pgbackrest info returned nothing")
    stanza = data[0]
    status = stanza.get("status", {})
    if status.get("code") not in (0, 2):  # 2: no backups yet
        detail = "; ".join(r.get("status", {}).get("message", "") for r in stanza.get("repo", [])
                           if r.get("status", {}).get("code"))
        text = f"{status.get('message', 'unknown status')}: {detail}" if detail else status.get("message", "?")
        hint = ""
        if any(k in text for k in ("HostConnectError", "unable to connect", "Connection refused", "timeout")):
            hint = " The repository (S3 backups bucket) is unreachable: is s3 running (`kredete stack up`)?"
        elif status.get("code") == 1:
            hint = " Run `kredete backup run` first."
        raise StackError(f"pgBackRest repository: {text[:600]}.{hint}")
    return stanza


def _ensure_s3() -> None:
    """On the primary MinIO: the backups bucket from its spec (object lock, versioning, SSE-KMS) and the
    backup_writer principal, with the s3 area's own functions (what `kredete s3 setup` does for them; the
    rest of that setup, DR and tiers, is not needed for backups)."""
    from stores.objects.buckets import ensure_buckets, specs_for
    from stores.objects.principals import PRINCIPALS, admin_objects
    from stores.objects.setup import _admin, apply_principals

    s = resolve()

    async def go() -> None:
        admin = _admin(s, s.s3_url or "")
        objects = admin_objects(s)
        try:
            await apply_principals(admin, "primary", [PRINCIPALS["backup_writer"]], s, s.s3_bucket_prefix)
            spec = [sp for sp in specs_for(s.s3_bucket_prefix) if sp.name.endswith("-backups")]
            reports = await ensure_buckets(objects, specs=spec, retention_days=None)
            problems = [p for r in reports for p in r.problems]
            if problems:
                raise StackError("; ".join(problems))
        finally:
            await objects.close()
            await admin.close()

    error: list[BaseException] = []

    def worker() -> None:
        try:
            asyncio.run(go())
        except BaseException as exc:  # re-raised in the caller's thread
            error.append(exc)

    # Its own thread and loop: callers may already be inside an event loop (tests, drills).
    t = threading.Thread(target=worker)
    t.start()
    t.join()
    if error:
        raise StackError(f"S3 setup for the backups bucket failed: {error[0]}") from error[0]


def setup_repository(primary) -> str:
    """Idempotent: bucket and principal, config, stanza (`stanza-create`).

    Returns the repository path. Needs the primary and S3 running.
    """
    if not (primary.pid() and primary.healthy()):
        raise StackError("the primary is not running (`kredete stack up`)")
    ensure_installed()
    if repository()["local"]:
        _ensure_s3()
    write_config(primary)
    pgbackrest("stanza-create", timeout=300)
    ready_marker(configured_cluster()).write_text("stanza created\n")
    write_archive_conf(primary)
    if primary._psql("SHOW archive_mode").strip() != "on":
        primary.start()  # restarts it once to turn archiving on (archive_mode needs a restart)
    else:
        primary._psql("SELECT pg_reload_conf()")
    return f"s3://{repository()['bucket']}/pgbackrest/{configured_cluster()}"


def setup_ha_repository(primary: Any, others: Sequence[Any]) -> str:
    """The HA profile's repository (idempotent): bucket and principal, a config naming every Patroni member
    (the leader as pg1; pgBackRest finds the primary among them anyway), the stanza. The members archive from
    their first start; pushes fail, and PostgreSQL keeps the WAL, until this ran."""
    cluster = primary.system_identifier()
    if not cluster:
        raise StackError(f"{primary.name} has no cluster yet")
    ensure_installed()
    if repository()["local"]:
        _ensure_s3()
    write_config(primary, others=others)
    pgbackrest("stanza-create", timeout=300)
    ready_marker(cluster).write_text("stanza created\n")
    return f"s3://{repository()['bucket']}/pgbackrest/{cluster}"


def ready_marker(cluster: str | None) -> Path:
    """Written once the bucket, principal and stanza exist for this cluster (the config alone is written at
    every start of the primary, before S3 may be up)."""
    return home() / f"stanza-{cluster}.ok"


def is_ready(cluster: str | None = None) -> bool:
    cluster = cluster or configured_cluster()
    return bool(cluster) and ready_marker(cluster).exists() and conf_file().exists()
