"""`kredete drill failover` (HA profile): kill -9 the Patroni leader (Patroni and its PostgreSQL) under a
write load; the synchronous standby takes over; the application finds it by itself (multi-host URLs with
target_session_attrs=primary); no acknowledged write may be lost. The killed member is then started
again and rejoins as a replica (pg_rewind).

RTO: from the kill to the first write acknowledged by the new leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time

from rich.console import Console

from config.errors import StackError
from kredete.drills import checks, oplog
from kredete.drills.checks import DrillReport
from kredete.drills.load import WriteLoad, missing
from kredete.drills.recovery import BackgroundLoad


def _kill_member(member) -> None:
    """kill -9 the member's Patroni process group and its postmaster's (whatever group it runs in)."""
    pids = []
    pid = member.pid()
    if pid:
        pids.append(pid)
    with contextlib.suppress(OSError, ValueError):
        pids.append(int((member.pgdata / "postmaster.pid").read_text().split()[0]))
    if not pids:
        raise StackError(f"{member.name} is not running")
    for p in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(os.getpgid(p), signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)


def _sync_state(lead: dict) -> str:
    """What the leader enforces right now: its synchronous_standby_names and each standby's sync_state (the
    evidence when a failover loses an acknowledged write)."""
    from kredete.stack import patroni

    try:
        port = int(str(lead["port"]))
        names = patroni.psql("SHOW synchronous_standby_names", port=port).strip()
        states = patroni.psql("SELECT string_agg(application_name || ' ' || sync_state, ', ' ORDER BY "
                              "application_name) FROM pg_stat_replication", port=port).strip()
        return f"synchronous_standby_names={names or repr('')}; standbys: {states or 'none'}"
    except Exception as exc:  # evidence only: the drill goes on without it
        return f"unknown ({type(exc).__name__})"


def _cancelled_sync_waits(members: list) -> str:
    """Commits whose wait for the synchronous standby was cancelled, per member (from its log): PostgreSQL
    reports them committed (locally, maybe not replicated) with a WARNING; one acknowledged so can be lost."""
    counts = []
    for member in members:
        try:
            n = member.log_file.read_text(errors="replace").count("canceling wait for synchronous replication")
        except OSError:
            n = 0
        counts.append(f"{member.name} {n}")
    return ", ".join(counts)


def run(*, users: int = 10, load_s: float = 20.0, workers: int = 4, console: Console | None = None) -> DrillReport:
    from kredete import stack
    from kredete.stack import patroni

    console = console or Console(stderr=True)
    if stack.profile() != "ha":
        raise StackError("the failover drill needs the HA profile: `kredete stack up --profile ha` (and "
                         "KREDETE_STACK_PROFILE=ha for the other commands)")
    t_start = time.monotonic()
    report = DrillReport(name="failover", rpo_s=0.0, rto_s=0.0, lost_acknowledged=0, rpo_goal_s=0.0)
    ids = checks.drill_users(users)
    members = {m["name"]: m for m in patroni.cluster()}
    lead = patroni.leader()
    if lead is None:
        raise StackError(f"no Patroni leader: {members}")
    roles = ", ".join(f"{n} {m.get('role')}" for n, m in sorted(members.items()))
    report.lines.append(f"before: {roles}")
    if not any(m.get("role") == "sync_standby" for m in members.values()):
        raise StackError(f"no synchronous standby yet ({roles}): wait for the replicas to stream")
    servers = {s.name: s for s in stack.local_servers()}
    victim = servers[lead["name"]]
    run_id = f"failover-{int(time.time())}"
    oplog.audit("drill.failover", run_id, console=console, leader=lead["name"], users=users)
    bg = BackgroundLoad(WriteLoad(ids, run_id=run_id, workers=workers)).start()
    t_load = time.monotonic()
    time.sleep(load_s)
    if bg.error:
        raise StackError(f"the write load failed before the cut: {bg.error}")
    report.lines.append(f"at the cut, the leader {victim.name} enforced {_sync_state(lead)}")
    cut = time.time()
    t_cut = time.monotonic()
    _kill_member(victim)
    # RTO counts writes sent after the kill: one in flight at the cut could still be acknowledged by the old
    # leader a moment later (a bench run measured "RTO=0.0" so).
    bg.load.stats.mark = time.time()
    console.print(f"destroyed: kill -9 of the Patroni leader {victim.name} (Patroni and its PostgreSQL)",
                  highlight=False)
    new = patroni.wait_for(lambda: (lambda m: m if m and m["name"] != victim.name else None)(patroni.leader()),
                           "no new leader", 120)
    promoted = time.time()
    back = bg.wait_for_ack_after(cut, timeout=120)
    time.sleep(2)
    bg.stop()
    t_back = time.monotonic()
    # The killed member starts again (pg_rewind, then it follows the new leader) while the checks below run
    # on the new leader: they read, the rejoin only streams.
    victim.notes.clear()
    restart_error: list[BaseException] = []

    def restart() -> None:
        try:
            victim.start()
        except BaseException as exc:  # re-raised below, in the drill's thread
            restart_error.append(exc)

    t_restart = time.monotonic()
    restarting = threading.Thread(target=restart, daemon=True)
    restarting.start()
    if back is None:
        report.failures.append(f"no write was acknowledged after the failover ({bg.error or 'timeout'})")
        back = time.time()
    report.rto_s = back - cut
    was = members.get(new["name"], {}).get("role")
    report.lines.append(f"failover: {new['name']} leads after {promoted - cut:.1f}s (was {was}); "
                        f"first write acknowledged {back - cut:.1f}s after the kill")
    acks = bg.load.stats.acks
    report.acknowledged = len(acks)
    t_lookups = time.monotonic()
    lost = asyncio.run(missing(acks, run_id=run_id))
    t_lookups = time.monotonic() - t_lookups
    lost_before = [a for a in lost if a.at <= cut]
    report.lost_acknowledged = len(lost_before)
    report.rpo_s = cut - lost_before[0].at if lost_before else 0.0
    n_pay = sum(a.kind == "payment" for a in acks)
    report.lines.append(f"load: {len(acks)} writes acknowledged ({n_pay} payments with ledger postings, "
                        f"{len(acks) - n_pay} credit-store), {bg.load.stats.errors} failed during the failover")
    if lost:
        report.failures.append(f"{len(lost)} acknowledged writes are missing after a synchronous failover: "
                               + ", ".join(f"{a.kind} acknowledged {cut - a.at:.1f}s before the kill"
                                           for a in lost[:5]))
    books_s, mcp_s = checks.books_audit_and_mcp(report, next((a for a in reversed(acks) if a.kind == "payment"),
                                                             None))
    t_checks = time.monotonic()
    restarting.join(timeout=victim.start_timeout + 30)
    if restart_error:
        raise restart_error[0]
    rejoined = patroni.wait_for(lambda: next((m for m in patroni.cluster() if m["name"] == victim.name
                                              and m.get("state") in ("running", "streaming")), None),
                                f"{victim.name} did not rejoin", 120)
    report.lines.append(f"{victim.name} restarted and rejoined as {rejoined.get('role')} in "
                        f"{time.monotonic() - t_restart:.1f}s")
    members_now = [s for s in servers.values() if isinstance(s, patroni.PatroniMember)]
    report.lines.append("commit waits for the synchronous standby cancelled (committed locally with a WARNING): "
                        + _cancelled_sync_waits(members_now))
    report.lines.append(f"phases: setup {t_load - t_start:.1f}s, load {t_cut - t_load:.1f}s, failover and "
                        f"first write {t_back - t_cut:.1f}s, checks {t_checks - t_back:.1f}s (lookups "
                        f"{t_lookups:.1f}s, books {books_s:.1f}s and MCP server {mcp_s:.1f}s side by side), "
                        f"rejoin waited {time.monotonic() - t_checks:.1f}s more")
    oplog.audit("drill.failover", run_id, decision="allowed" if report.ok else "error", console=console,
                **report.as_dict())
    return report
