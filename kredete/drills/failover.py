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


def run(*, users: int = 10, load_s: float = 20.0, workers: int = 4, console: Console | None = None) -> DrillReport:
    from kredete import stack
    from kredete.stack import patroni

    console = console or Console(stderr=True)
    if stack.profile() != "ha":
        raise StackError("the failover drill needs the HA profile: `kredete stack up --profile ha` (and "
                         "KREDETE_STACK_PROFILE=ha for the other commands)")
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
    time.sleep(load_s)
    if bg.error:
        raise StackError(f"the write load failed before the cut: {bg.error}")
    cut = time.time()
    bg.load.stats.mark = cut
    _kill_member(victim)
    console.print(f"destroyed: kill -9 of the Patroni leader {victim.name} (Patroni and its PostgreSQL)",
                  highlight=False)
    new = patroni.wait_for(lambda: (lambda m: m if m and m["name"] != victim.name else None)(patroni.leader()),
                           "no new leader", 120)
    promoted = time.time()
    back = bg.wait_for_ack_after(cut, timeout=120)
    time.sleep(2)
    bg.stop()
    if back is None:
        report.failures.append(f"no write was acknowledged after the failover ({bg.error or 'timeout'})")
        back = time.time()
    report.rto_s = back - cut
    was = members.get(new["name"], {}).get("role")
    report.lines.append(f"failover: {new['name']} leads after {promoted - cut:.1f}s (was {was}); "
                        f"first write acknowledged {back - cut:.1f}s after the kill")
    acks = bg.load.stats.acks
    report.acknowledged = len(acks)
    lost = asyncio.run(missing(acks, run_id=run_id))
    lost_before = [a for a in lost if a.at <= cut]
    report.lost_acknowledged = len(lost_before)
    report.rpo_s = cut - lost_before[0].at if lost_before else 0.0
    n_pay = sum(a.kind == "payment" for a in acks)
    report.lines.append(f"load: {len(acks)} writes acknowledged ({n_pay} payments with ledger postings, "
                        f"{len(acks) - n_pay} credit-store), {bg.load.stats.errors} failed during the failover")
    if lost:
        report.failures.append(f"{len(lost)} acknowledged writes are missing after a synchronous failover")
    checks.books_and_audit(report)
    survivor = next((a for a in reversed(acks) if a.kind == "payment"), None)
    if survivor is not None:
        checks.mcp_answers(report, survivor.user_id, survivor.key)
    t = time.monotonic()
    victim.notes.clear()
    victim.start()
    rejoined = patroni.wait_for(lambda: next((m for m in patroni.cluster() if m["name"] == victim.name
                                              and m.get("state") in ("running", "streaming")), None),
                                f"{victim.name} did not rejoin", 120)
    report.lines.append(f"{victim.name} restarted and rejoined as {rejoined.get('role')} in "
                        f"{time.monotonic() - t:.1f}s")
    oplog.audit("drill.failover", run_id, decision="allowed" if report.ok else "error", console=console,
                **report.as_dict())
    return report
