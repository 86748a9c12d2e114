"""`kredete drill restore` and `kredete drill pitr`: destroy for real under a write load, recover from the
pgBackRest repository alone, then account for every acknowledged write.

* restore: kill -9 the primary's process group and delete its data dir; `restore --to latest --replace`.
  Writes acknowledged more than the RPO goal before the cut must all be there; the ones lost are the WAL not
  yet archived (at most archive_timeout plus one push).
* pitr: a destructive statement (`TRUNCATE transactions CASCADE`, past the guard trigger) on the live
  primary; `restore --to <just before it> --replace`. Every write acknowledged before that instant must be
  back, in the payments database and in the credit store alike, and none made after it (both stores cut at
  the same instant).

RTO: from the cut to the first write acknowledged again by the recovered primary.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import threading
import time
from datetime import UTC, datetime

from rich.console import Console

from config.errors import StackError
from kredete.drills import checks, oplog
from kredete.drills.checks import DrillReport
from kredete.drills.load import WriteLoad, missing


class BackgroundLoad:
    """The write load in its own thread and event loop, so the drill can kill and restore meanwhile."""

    def __init__(self, load: WriteLoad) -> None:
        self.load = load
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self.load.run(self.stop_event))
        except BaseException as exc:
            self.error = exc

    def start(self) -> BackgroundLoad:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=60)

    def wait_for_ack_after(self, mark: float, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.error is None:
            first = self.load.stats.first_ack_after_mark
            if first is not None and first > mark:
                return first
            time.sleep(0.2)
        return None


def _destroy_primary(console: Console) -> None:
    """kill -9 the primary's whole process group, then delete its data dir."""
    from kredete.stack.base import pid_alive
    from kredete.stack.postgres import PostgresPrimary

    primary = PostgresPrimary()
    pid = primary.pid()
    if not pid:
        raise StackError("the primary is not running")
    os.killpg(pid, signal.SIGKILL)
    # A primary this process started stays a zombie until reaped: reap it when it is our child, as kill9_server
    # does. (The lock files it leaves are cleared by the restored server's start if their pid is reused.)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, 0)
    for _ in range(100):
        if not (primary.pgdata / "postmaster.pid").exists() or not pid_alive(pid):
            break
        time.sleep(0.05)
    shutil.rmtree(primary.pgdata)
    console.print(f"destroyed: kill -9 of the primary (pid {pid}) and rm -rf {primary.pgdata}", highlight=False)


def _destructive_statement(console: Console) -> float:
    """Run a destructive statement on the live primary; returns the server's time just before it."""
    from kredete.stack.postgres import PostgresPrimary

    primary = PostgresPrimary()
    before = float(primary._psql("SELECT extract(epoch FROM clock_timestamp())", db=_db()).strip())
    time.sleep(0.2)  # commits in this gap are after the target: keeps "before" strictly before the statement
    # The schema refuses TRUNCATE of transactions (a trigger); a superuser can still switch triggers off, the
    # kind of mistake PITR exists for.
    primary._psql("SET session_replication_role = replica; TRUNCATE transactions CASCADE", db=_db())
    console.print("destroyed: TRUNCATE transactions CASCADE (guard triggers bypassed by a superuser) on the "
                  "live primary", highlight=False)
    return before


def _db() -> str:
    from config.settings import resolve

    return resolve().postgres_db


def run(kind: str, *, users: int = 10, load_s: float = 20.0, workers: int = 4, rpo_goal_s: float = 60.0,
        console: Console | None = None) -> DrillReport:
    """Run the `restore` or `pitr` drill; returns its report (the caller prints the last line)."""
    from kredete.drills.backups import backups, ensure_ready, run_backup
    from kredete.drills.restore import restore

    console = console or Console(stderr=True)
    report = DrillReport(name=kind, rpo_s=0.0, rto_s=0.0, lost_acknowledged=0, rpo_goal_s=rpo_goal_s)
    ids = checks.drill_users(users)
    ensure_ready()
    run_backup("incr" if backups() else "full", console)  # the schedule's last backup, before the load
    run_id = f"{kind}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}"
    oplog.audit(f"drill.{kind}", run_id, console=console, users=users, load_s=load_s)
    bg = BackgroundLoad(WriteLoad(ids, run_id=run_id, workers=workers)).start()
    time.sleep(load_s)
    if bg.error:
        raise StackError(f"the write load failed before the cut: {bg.error}")
    if kind == "restore":
        cut = time.time()
        _destroy_primary(console)
        target: object = "latest"
    else:
        cut = _destructive_statement(console)
        target = datetime.fromtimestamp(cut, UTC)
        time.sleep(1)  # writes after the statement: the PITR must discard them
    bg.stop()
    result = restore(target, replace=True, console=console, rebuild_replicas=False)  # type: ignore[arg-type]
    report.lines.append(f"restore: {result.label} -> {result.recovered_to} (timeline {result.timeline}) in "
                        f"{result.seconds}s {result.phases}; previous data dir kept at {result.moved_aside}")
    # Writes again, on the recovered primary: the first acknowledgement ends the outage (RTO).
    after = BackgroundLoad(WriteLoad(ids, run_id=run_id + "-after", workers=workers))
    after.load.stats.mark = cut
    after.start()
    back = after.wait_for_ack_after(cut, timeout=120)
    # The service is back (RTO); the replicas are rebuilt from the new primary while the load goes on.
    from kredete.drills.restore import rebuild_replicas_of_new_primary

    t_rep = time.monotonic()
    rebuild_replicas_of_new_primary(console)
    report.lines.append(f"replicas rebuilt from the restored primary in {time.monotonic() - t_rep:.1f}s "
                        "(reads went to the primary meanwhile)")
    after.stop()
    if back is None:
        report.failures.append(f"no write was acknowledged after recovery ({after.error or 'timeout'})")
        back = time.time()
    report.rto_s = back - cut
    acks = bg.load.stats.acks
    report.acknowledged = len(acks)
    lost = asyncio.run(missing(acks, run_id=run_id))
    lost_after_recovery = asyncio.run(missing(after.load.stats.acks, run_id=run_id + "-after"))
    before = [a for a in acks if a.at <= cut]
    # Sent after the cut: committed after it. (A write in flight across the cut may be on either side.)
    after_target = [a for a in acks if a.started > cut]
    lost_before = [a for a in lost if a.at <= cut]
    report.lost_acknowledged = len(lost_before)
    report.rpo_s = cut - lost_before[0].at if lost_before else 0.0
    n_pay = sum(a.kind == "payment" for a in before)
    report.lines.append(f"load: {len(before)} writes acknowledged before the cut ({n_pay} payments with ledger "
                        f"postings, {len(before) - n_pay} credit-store), {bg.load.stats.errors} failed at the cut; "
                        f"{len(after.load.stats.acks)} after recovery")
    report.lines.append(f"lost: {len(lost_before)} acknowledged before the cut ("
                        f"{sum(a.kind == 'payment' for a in lost_before)} payments, "
                        f"{sum(a.kind == 'credit' for a in lost_before)} credit-store)")
    too_old = [a for a in lost_before if a.at < cut - rpo_goal_s]
    if too_old:
        report.failures.append(f"{len(too_old)} writes acknowledged more than {rpo_goal_s:g}s before the cut "
                               "are missing")
    if kind == "pitr":
        if lost_before:
            report.failures.append(f"PITR did not bring back {len(lost_before)} writes made before the target")
        gone = {(a.kind, a.key) for a in lost}
        kept_after = [a for a in after_target if (a.kind, a.key) not in gone]
        report.lines.append(f"same instant: {len(after_target) - len(kept_after)} of {len(after_target)} writes "
                            "made after the target are gone from both stores, every earlier one is back "
                            f"({sum(a.kind == 'payment' for a in before)} payments, "
                            f"{sum(a.kind == 'credit' for a in before)} credit-store)")
        if kept_after:
            report.failures.append(f"{len(kept_after)} writes made after the target survived the PITR "
                                   f"({', '.join(sorted({a.kind for a in kept_after}))}): the stores were not "
                                   "restored to one instant")
    if lost_after_recovery:
        report.failures.append(f"{len(lost_after_recovery)} writes acknowledged after recovery are missing")
    if report.rpo_s > rpo_goal_s:
        report.failures.append(f"RPO {report.rpo_s:.1f}s is above the goal {rpo_goal_s:g}s")
    checks.books_audit_and_mcp(report, next((a for a in after.load.stats.acks if a.kind == "payment"), None))
    if report.ok and result.moved_aside:
        # The drill's own wreckage; a real restore keeps the old data dir for the operator to inspect.
        shutil.rmtree(result.moved_aside, ignore_errors=True)
        report.lines.append(f"removed the drill's moved-aside data dir {result.moved_aside}")
    oplog.audit(f"drill.{kind}", run_id, decision="allowed" if report.ok else "error", console=console,
                **report.as_dict())
    return report
