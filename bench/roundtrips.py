"""Socket writes and reads per MCP call, per destination: strace on the server during sequential calls.

    python -m bench.roundtrips [--calls 200] [--tool get_transaction get_dispute] [--transport http stdio]
                               [--out bench/results/roundtrips.txt]

The server and the calls are `bench.profile_calls`'s (bench dataset, support agent, sequential calls after an
untraced warm-up; the traced block is its `WARMUP` + `--calls` calls); instead of py-spy, `strace -f -yy` is
attached to every thread of the server process during the calls (and one settling second after the last, so
the writes a call leaves to the background are counted) and each write-class system call (write, writev, sendto,
sendmsg, pwrite64) and read-class one (read, readv, recvfrom, recvmsg, pread64) is attributed to what its file
descriptor is: a TCP connection to a store of the stack (by its port), the MCP client (the HTTP server's own
port, or the stdio pipes), the event loop's self-pipe (a thread waking the loop), a file (the local queues'
SQLite, logs). Counts are per call (totals ÷ calls). strace slows every system call, so the latencies of such a
run are not the server's: time-based batching (the trace recorder's commits, the AI logger's linger) may group
more calls per write here than at full speed.
Needs strace.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench.profile_calls import RESULTS, TOOLS, WARMUP, Bench, finish, git_head
from config import ports

WRITES = ("write", "writev", "sendto", "sendmsg", "pwrite64")
SYNCS = ("fsync", "fdatasync")
EPHEMERAL = 32768
READS = ("read", "readv", "recvfrom", "recvmsg", "pread64")
#: `1234  sendto(12<TCP:[127.0.0.1:40000->127.0.0.1:20432]>, ...) = 55`; -yy decodes each descriptor.
_LINE = re.compile(r"^\d+\s+(\w+)\((\d+)<(.*?)>(?=[,)]).*?(?:\)\s+=\s+(-?\d+)|<unfinished \.\.\.>)")
_TCP = re.compile(r"TCPv?6?:\[(?:[^\]]*?):(\d+)->(?:[^\]]*?):(\d+)\]")


def destinations() -> dict[int, str]:
    """The stack's ports by what listens on them."""
    named = {ports.POSTGRES: "PostgreSQL primary", ports.POSTGRES_REPLICA: "PostgreSQL replica",
             ports.POSTGRES_REPLICA2: "PostgreSQL replica 2", ports.REDIS: "Redis", ports.MONGO: "FerretDB",
             ports.OPENSEARCH: "OpenSearch", ports.S3: "S3", ports.COLLECTOR: "collector"}
    named.update({p: "Redis (cluster)" for p in ports.REDIS_CLUSTER})
    return named


def classify(fd: int, what: str, named: dict[int, str]) -> str:
    """What a descriptor strace decoded as `what` (e.g. `TCP:[a:1->b:2]`, `pipe:[9]`, `/path`) is."""
    tcp = _TCP.search(what)
    if tcp:
        local, remote = int(tcp.group(1)), int(tcp.group(2))
        if remote in named:
            return named[remote]
        # An accepted connection: our end is the server's port (stack and scratch ports lie below Linux's
        # ephemeral range, `config.ports`), the peer's is ephemeral.
        return "MCP client (HTTP)" if local < EPHEMERAL <= remote else f"TCP port {remote}"
    if what.startswith("pipe:"):  # a stdio server's stdin and stdout (on the event loop: duplicated descriptors)
        return "MCP client (stdio)"
    if what.startswith("UNIX"):
        return "event loop wake-up (self-pipe)"
    if what.startswith("/"):
        name = Path(what).name
        return f"file {name}" if "sqlite" in name or name.endswith((".db", "-wal", "-journal")) else "file (other)"
    return what.split(":", 1)[0] or f"fd {fd}"


def count(raw: Path) -> dict[str, dict[str, int]]:
    """{destination: {"writes", "reads", "bytes_out", "syncs"}} from strace's output (failed calls, e.g. EAGAIN,
    left out)."""
    named = destinations()
    out: dict[str, dict[str, int]] = collections.defaultdict(lambda: {"writes": 0, "reads": 0, "bytes_out": 0,
                                                                      "syncs": 0})
    for line in raw.read_text(errors="replace").splitlines():
        m = _LINE.match(line)
        # A call another thread interrupted is printed `<unfinished ...>` (its result on a later line, without
        # the descriptor): counted as done, its bytes unknown (0).
        ret = int(m.group(4)) if m and m.group(4) is not None else 0
        if not m or ret < 0:
            continue
        call, fd, what = m.group(1), int(m.group(2)), m.group(3)
        row = out[classify(fd, what, named)]
        if call in WRITES:
            row["writes"] += 1
            row["bytes_out"] += ret
        elif call in READS:
            row["reads"] += 1
        elif call in SYNCS:
            row["syncs"] += 1
    return dict(out)


def _strace() -> str:
    exe = shutil.which("strace")
    if exe is None:
        raise SystemExit("strace is not installed")
    return exe


@contextlib.contextmanager
def tracing(pid: int, raw: Path, strings: int = 0) -> Iterator[None]:
    """strace attached to every thread of `pid` for the block and one settling second after it (`strings`: how
    many bytes of each buffer it prints)."""
    trace = subprocess.Popen([_strace(), "-f", "-qq", "-yy", "-s", str(strings), "-e", "signal=none",
                              "-e", "trace=" + ",".join(WRITES + READS + SYNCS), "-p", str(pid), "-o", str(raw)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached before the first counted call
    try:
        yield
        time.sleep(1.0)  # what the last calls left to the background (trace batches, the AI logger's linger)
    finally:
        trace.send_signal(signal.SIGINT)  # detaches
        trace.wait(timeout=60)


def table(title: str, counts: dict[str, dict[str, int]], calls: int) -> str:
    lines = [f"== {title}: per call (÷ {calls})",
             f"   {'destination':34} {'writes':>7} {'reads':>7} {'bytes out':>10} {'fsyncs':>7}"]
    for dest, row in sorted(counts.items(), key=lambda kv: -kv[1]["writes"]):
        lines.append(f"   {dest:34} {row['writes'] / calls:7.2f} {row['reads'] / calls:7.2f} "
                     f"{row['bytes_out'] / calls:10.0f} {row['syncs'] / calls:7.2f}")
    total = {k: sum(r[k] for r in counts.values()) / calls for k in ("writes", "reads", "syncs")}
    lines.append(f"   {'total':34} {total['writes']:7.2f} {total['reads']:7.2f} {'':10} {total['syncs']:7.2f}")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--users", type=int, default=200, help="seeded users in the bench dataset")
    ap.add_argument("--transport", nargs="+", default=["stdio", "http"], choices=["http", "stdio"])
    ap.add_argument("--tool", nargs="+", default=list(TOOLS))
    ap.add_argument("--role", default="support_agent")
    ap.add_argument("--out", type=Path, default=RESULTS / "roundtrips.txt")
    ap.add_argument("--raw", type=Path, help="keep strace's output in this directory")
    ap.add_argument("--strings", type=int, default=0, help="bytes of each buffer strace prints (with --raw)")
    args = ap.parse_args()
    bench = Bench.prepare(args.users)
    out = [f"# Socket writes and reads per MCP call ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
           f"git {git_head()}, {args.calls} sequential calls each as {args.role}, strace -f on the server; "
           f"load average at start {os.getloadavg()[0]:.1f})\n"]
    with tempfile.TemporaryDirectory() as tmp:
        keep = args.raw or Path(tmp)
        keep.mkdir(parents=True, exist_ok=True)
        for tool in args.tool:
            for transport in args.transport:
                raw = keep / f"{tool}-{transport}.strace"
                stats = bench.run(transport, tool, args.role, args.calls, raw,
                                  lambda pid, path: tracing(pid, path, args.strings))
                # The traced block makes WARMUP untimed calls before the timed ones (`profile_calls._drive`).
                out.append(table(f"{tool} over {transport} (client p50 {stats['p50_ms']:.1f} ms under strace)",
                                 count(raw), WARMUP + args.calls))
                print(out[-1], flush=True)
    finish(out, args.out)


if __name__ == "__main__":
    main()
