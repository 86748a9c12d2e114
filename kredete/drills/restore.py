"""Restore the PostgreSQL cluster from the pgBackRest repository, to the latest WAL or to a moment (PITR).

By default the restore goes into a new, empty data dir and is recovered there by a temporary server on a free
port with archiving off (a test restore must never push a new timeline into the repository); the live
primary is not touched. `replace=True` stops the local primary, moves its data dir aside (never deleted),
restores in its place, starts it (archiving on, a new timeline) and rebuilds the read replicas from it.

Everything that can be checked before writing a byte is: the repository answers, the backup label exists,
a backup finished before the target time, the target dir is empty. After recovery the server's own log
says where redo ended; a restore to `latest` that ended before the newest archived WAL segment (one missing
or unreadable in between) is refused instead of silently losing the rest.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from config.errors import StackError
from config.paths import local_dir
from config.ports import free_port
from kredete.drills import oplog
from kredete.stack import pgbackrest

WAL_SEGMENT = 16 * 1024 * 1024


@dataclass
class RestoreResult:
    target: str
    label: str
    target_dir: str
    replaced: bool
    seconds: float
    #: Commit time of the last transaction replayed (the instant the restored cluster shows).
    recovered_to: str | None
    redo_end_lsn: str | None
    timeline: int | None
    moved_aside: str | None = None
    #: Seconds per phase (restore files, recovery, replicas and FerretDB).
    phases: dict[str, float] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_target(text: str) -> str | datetime:
    """`latest`, or an ISO-8601 time (no zone: UTC)."""
    if text == "latest":
        return "latest"
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise StackError(f"--to {text!r} is neither `latest` nor an ISO-8601 time such as "
                         "2026-12-06T08:30:00Z") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _ts(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def lsn_value(lsn: str) -> int:
    hi, lo = lsn.split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


def segment_start(name: str) -> int:
    """First LSN of a WAL segment file name (timeline, log, segment)."""
    return (int(name[8:16], 16) << 32) + int(name[16:24], 16) * WAL_SEGMENT


def choose_backup(stanza: dict[str, Any], to: str | datetime, label: str | None) -> dict[str, Any]:
    """The backup a restore would start from; a clear StackError when there is none."""
    items = stanza.get("backup", [])
    if not items:
        raise StackError("the repository holds no backup yet: nothing to restore (run `kredete backup run`)")
    labels = [b["label"] for b in items]
    if label and label not in labels:
        raise StackError(f"unknown backup label {label!r}; the repository holds: {', '.join(labels)}")
    pool = [b for b in items if b["label"] == label] if label else items
    if to == "latest":
        return pool[-1]
    stamp = to.timestamp()
    if stamp > time.time():
        raise StackError(f"--to {to.isoformat()} is in the future")
    finished = [b for b in pool if b["timestamp"]["stop"] <= stamp]
    if not finished:
        first = pool[0]
        what = f"backup {label}" if label else "the first backup"
        raise StackError(f"{to.isoformat()} is before {what} finished ({first['label']} at "
                         f"{_ts(first['timestamp']['stop'])}): there is no backup to recover forward from")
    return finished[-1]


def _check_target_dir(path: Path) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise StackError(f"target dir {path} is not empty: nothing was restored (choose a new or empty dir; "
                         "an existing data dir is never overwritten)")


def _make_dir(path: Path) -> None:
    """Create `path` (and missing parents) for the server's user; directories that already exist are left
    exactly as they are (a target dir may sit anywhere: its parent is not ours to chmod)."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir()
        os.chmod(d, 0o700 if d == path else 0o755)
        pgbackrest._chown(d)
    if not missing:  # an existing empty target dir becomes the data dir: PostgreSQL wants it 0700 and its own
        os.chmod(path, 0o700)
        pgbackrest._chown(path)


def _as_server_user(argv: list[str]) -> list[str]:
    user = pgbackrest._run_user()
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--", *argv] if user else argv


def _recovery_facts(log_text: str) -> dict[str, Any]:
    redo = re.findall(r"redo done at ([0-9A-F]+/[0-9A-F]+)", log_text)
    last = re.findall(r"last completed transaction was at log time (\S+ \S+)", log_text)
    tli = re.findall(r"selected new timeline ID: (\d+)", log_text)
    fatal = [ln for ln in log_text.splitlines() if "FATAL" in ln or "PANIC" in ln]
    return {"redo_end_lsn": redo[-1] if redo else None,
            "recovered_to": (datetime.fromisoformat(last[-1].replace(" ", "T")).astimezone(UTC)
                             .isoformat(timespec="milliseconds") if last else None),
            "timeline": int(tli[-1]) if tli else None, "fatal": fatal}


def _explain_recovery(facts: dict[str, Any], to: str | datetime) -> str:
    fatal = " ".join(facts["fatal"])[-600:]
    if "recovery ended before configured recovery target was reached" in fatal:
        return (f"WAL needed to reach {to.isoformat() if isinstance(to, datetime) else to} is missing or "
                f"unreadable in the repository (redo stopped at {facts['redo_end_lsn'] or 'the backup end'}): "
                "the restore was not promoted")
    return f"recovery failed: {fatal or 'the server exited without promoting'}"


def _wait_promoted(proc_alive, read_log, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = read_log()
        if "database system is ready to accept connections" in text:
            return _recovery_facts(text)
        if not proc_alive():
            return {**_recovery_facts(text), "failed": True}
        time.sleep(0.3)
    raise StackError(f"recovery did not finish in {timeout:.0f}s")


def _check_complete(facts: dict[str, Any], stanza: dict[str, Any], to: str | datetime) -> None:
    """A `latest` restore must have replayed up to the newest archived segment."""
    if to != "latest" or not facts.get("redo_end_lsn"):
        return
    archive = (stanza.get("archive") or [{}])[-1]
    newest = archive.get("max")
    if newest and lsn_value(facts["redo_end_lsn"]) < segment_start(newest):
        raise StackError(f"recovery stopped at {facts['redo_end_lsn']} but the archive goes on to segment "
                         f"{newest}: a WAL segment in between is missing or unreadable (run `kredete backup "
                         "verify`). The restored copy was not used")


def restore(to: str | datetime = "latest", *, target_dir: Path | None = None, label: str | None = None,
            replace: bool = False, console: Console | None = None, timeout: float = 1800,
            rebuild_replicas: bool = True) -> RestoreResult:
    """Restore (and recover) the cluster; see the module docstring. Audited; Ctrl-C stops it."""
    from kredete.stack.postgres import PostgresPrimary

    console = console or Console(stderr=True)
    from kredete import stack

    if stack.profile() == "ha":
        raise StackError("`kredete restore` restores the default profile's primary; a Patroni cluster is restored "
                         "by bootstrapping a new cluster from the repository (Patroni's bootstrap method "
                         "`pgbackrest restore`), which these commands do not automate. `kredete backup run|list|"
                         "verify` work in the HA profile")
    primary = PostgresPrimary()
    if replace and target_dir is not None:
        raise StackError("--replace restores into the primary's own data dir: do not pass --target-dir too")
    cluster = pgbackrest.configured_cluster()
    if not cluster:
        raise StackError("no pgBackRest repository is configured here (.local/pgbackrest/pgbackrest.conf): "
                         "`kredete stack up` and `kredete backup run` make one")
    stanza = pgbackrest.info()  # the repository answers (or a clear error)
    chosen = choose_backup(stanza, to, label)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    moved: Path | None = None
    if replace:
        dest = primary.pgdata
    else:
        dest = (target_dir or local_dir() / "restores" / stamp / "pgdata").resolve()
        if dest == primary.pgdata.resolve():
            raise StackError(f"{dest} is the live primary's data dir: pass --replace to restore over it")
        _check_target_dir(dest)
    target = to if to == "latest" else to.isoformat()
    t0 = time.monotonic()
    if replace:
        if primary.pid():
            primary.stop_fast()
        if dest.exists():
            moved = dest.with_name(f"pgdata.replaced-{stamp}")
            dest.rename(moved)
    _make_dir(dest)
    args = ["--log-level-file=detail", "restore", f"--pg1-path={dest}", f"--set={chosen['label']}"]
    if to != "latest":
        args += ["--type=time", f"--target={to.isoformat(sep=' ')}", "--target-action=promote"]
    argv = _as_server_user([pgbackrest.BIN, f"--config={pgbackrest.conf_file()}", f"--stanza={pgbackrest.STANZA}",
                            *args])
    try:
        proc = oplog.run_with_progress(argv, description=f"restore {chosen['label']}",
                                       log=pgbackrest.log_dir() / f"{pgbackrest.STANZA}-restore.log",
                                       console=console, cwd=pgbackrest.home())
    except KeyboardInterrupt:
        oplog.audit("restore.run", f"pgbackrest:{pgbackrest.STANZA}", decision="error",
                    reason="interrupted by the operator", console=console, target=target, target_dir=str(dest))
        raise
    if proc.returncode != 0:
        raise StackError(pgbackrest.explain(proc, "restore"))
    phases = {"restore_files": round(time.monotonic() - t0, 1)}
    t1 = time.monotonic()
    with console.status("recovering (replaying WAL from the repository)"):
        facts = _recover_in_place(primary) if replace else _recover_scratch(dest, timeout)
    if facts.get("failed"):
        raise StackError(_explain_recovery(facts, to) + (f"; the previous data dir is kept at {moved}"
                                                          if moved else ""))
    _check_complete(facts, stanza, to)
    phases["recovery"] = round(time.monotonic() - t1, 1)
    result = RestoreResult(target=target, label=chosen["label"], target_dir=str(dest), replaced=replace,
                           seconds=round(time.monotonic() - t0, 1), recovered_to=facts["recovered_to"],
                           redo_end_lsn=facts["redo_end_lsn"], timeline=facts["timeline"],
                           moved_aside=str(moved) if moved else None, phases=phases)
    if replace:
        t2 = time.monotonic()
        restart_ferretdb()
        phases["ferretdb"] = round(time.monotonic() - t2, 1)
        if rebuild_replicas:
            t3 = time.monotonic()
            rebuild_replicas_of_new_primary(console)
            phases["replicas"] = round(time.monotonic() - t3, 1)
        result.seconds = round(time.monotonic() - t0, 1)
    oplog.audit("restore.run", f"pgbackrest:{pgbackrest.STANZA}", console=console, **result.as_dict())
    return result


def _recover_scratch(dest: Path, timeout: float) -> dict[str, Any]:
    """Recover a restored dir with a temporary server (archiving off, free port), then stop it."""
    from kredete.stack.postgres import PG_BIN

    log = pgbackrest.log_dir() / f"recovery-{dest.parent.name}.log"
    port = free_port()
    argv = _as_server_user([str(PG_BIN / "postgres"), "-D", str(dest), "-p", str(port),
                            "-c", "archive_mode=off", "-c", "listen_addresses=127.0.0.1",
                            "-c", f"unix_socket_directories={dest}", "-c", "logging_collector=off"])
    with log.open("wb") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        return _wait_promoted(lambda: proc.poll() is None, lambda: log.read_text(errors="replace"), timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # fast shutdown
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _recover_in_place(primary) -> dict[str, Any]:
    """Start the local primary on the restored data dir and wait for the end of recovery."""
    offset = primary.log_file.stat().st_size if primary.log_file.exists() else 0

    def read_log() -> str:
        with primary.log_file.open("rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")

    try:
        primary.start()
    except StackError:
        return {**_recovery_facts(read_log()), "failed": True}
    return _wait_promoted(lambda: bool(primary.pid()), read_log, 1800)


def restart_ferretdb() -> None:
    """FerretDB's connections to the old primary died with it: restart it on the restored one."""
    from kredete import stack

    mongo = next((s for s in stack.local_servers() if s.name == "mongo"), None)
    if mongo is not None and mongo.pid():
        mongo.stop()
        mongo.start()


def rebuild_replicas_of_new_primary(console: Console) -> None:
    """The replicas are copies of the old timeline: rebuild both from the restored primary, in parallel
    (reads go to the primary meanwhile: the store skips a replica that is down)."""
    import threading

    from kredete import stack

    errors: list[str] = []

    def rebuild(server) -> None:
        try:
            server.stop_fast(timeout=15)
            shutil.rmtree(server.pgdata, ignore_errors=True)
            server.start()
        except StackError as exc:
            errors.append(f"{server.name}: {str(exc).splitlines()[0]}")

    # Only the replicas this stack runs (a replica never started is not started here either).
    replicas = [s for s in stack.local_servers() if s.name in ("postgres-replica", "postgres-replica2")
                and (s.pid() or (s.pgdata / "PG_VERSION").exists())]
    threads = [threading.Thread(target=rebuild, args=(s,)) for s in replicas]
    with console.status("rebuilding the read replicas from the restored primary"):
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if errors:
        raise StackError("replica rebuild failed: " + "; ".join(errors))
