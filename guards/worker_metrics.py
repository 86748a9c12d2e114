"""One /metrics for every HTTP worker: prometheus-client's multiprocess mode (`kredete serve --workers N`, N > 1).

Each worker writes its counters, histograms and gauges to memory-mapped files in one directory
(`PROMETHEUS_MULTIPROC_DIR`), and whichever worker answers a scrape merges every worker's files: counters and
histograms are summed over the workers (a worker that died or was replaced keeps its counts, so totals never go
back), gauges are reported per worker with a `pid` label, and only for live workers.

* The supervisor (`prepare_dir`) makes the directory per run and empties it before the workers start (old
  files would add a previous run's counts), and removes the files when they have stopped (`remove_dir`).
  `PROMETHEUS_MULTIPROC_DIR` names it when set, else `.local/metrics/http-<port>`. The variable must be set
  before a worker imports prometheus_client: uvicorn spawns fresh interpreters that inherit it.
* A worker that stops marks itself dead (`process_exited`, prometheus-client's `mark_process_dead`, and its gauge
  files removed); one killed with SIGKILL cannot, so every worker sweeps the files of dead pids when it starts
  (`sweep_dead`), which is also when uvicorn's supervisor replaces a killed worker.
* What cannot live in those files is the answering worker's own, labelled with its `pid`: its connection-pool
  gauges (`kredete_pool_*`) and the AI logger's gauges (`kredete_ai_log_*`), computed at scrape time.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config.processes import pid_alive

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

ENV = "PROMETHEUS_MULTIPROC_DIR"
_PID = re.compile(r"_(\d+)\.db$")


def enabled() -> bool:
    """Whether this process writes its metrics to the shared directory."""
    return bool(os.environ.get(ENV))


def prepare_dir(port: int) -> Path:
    """The supervisor's step before it spawns workers: the run's directory, emptied, named in the environment."""
    from config.paths import local_dir

    path = Path(os.environ.get(ENV) or local_dir() / "metrics" / f"http-{port}")
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("*.db"):  # only prometheus-client's files: the directory may be an operator's
        old.unlink(missing_ok=True)
    os.environ[ENV] = str(path)
    return path


def remove_dir(path: Path) -> None:
    """The supervisor's step after its workers stopped: the run's files go (a next run starts from zero anyway)."""
    for f in path.glob("*.db"):
        f.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # an operator's directory may hold other files: then it stays
        path.rmdir()


def _forget_gauges(path: Path, pid: int) -> None:
    """A gone worker's gauges say nothing about now: `mark_process_dead` drops the live modes, this the rest."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, str(path))
    for f in path.glob(f"gauge_*_{pid}.db"):
        f.unlink(missing_ok=True)


def sweep_dead() -> None:
    """At a worker's start: forget the gauges of workers that died without saying so (SIGKILL, OOM)."""
    path = Path(os.environ[ENV])
    pids = {int(m.group(1)) for f in path.glob("gauge_*.db") if (m := _PID.search(f.name))}
    for pid in pids - {os.getpid()}:
        if not pid_alive(pid):
            _forget_gauges(path, pid)


def process_exited() -> None:
    """At a worker's orderly shutdown: its gauges go, its counts stay."""
    with contextlib.suppress(OSError, KeyError):
        _forget_gauges(Path(os.environ[ENV]), os.getpid())


def _with_pid(families: Any) -> Iterator[Metric]:
    from prometheus_client.metrics_core import Metric

    pid = str(os.getpid())
    for family in families:
        out = Metric(family.name, family.documentation, family.type, family.unit)
        for s in family.samples:
            out.add_sample(s.name, {**s.labels, "pid": pid}, s.value, s.timestamp, s.exemplar)
        yield out


class _Merged:
    """Every worker's files, less the gauges whose value a function of this worker computes at scrape time
    (their files hold nothing), which come from this worker instead, like its pool gauges."""

    def __init__(self, path: str) -> None:
        from prometheus_client import multiprocess

        from guards.tracing import AI_LOG_BUFFERED, AI_LOG_DROPPED, AI_LOG_FAILED

        self._files = multiprocess.MultiProcessCollector(None, path)
        self._functions = (AI_LOG_DROPPED, AI_LOG_FAILED, AI_LOG_BUFFERED)

    def collect(self) -> Iterator[Metric]:
        from stores.metrics import POOLS

        own = [f for g in self._functions for f in g.collect()]
        names = {f.name for f in own}
        yield from (f for f in self._files.collect() if f.name not in names)
        yield from _with_pid(own)
        yield from _with_pid(POOLS.collect())


def exposition() -> bytes:
    """Every worker's metrics merged, plus the answering worker's own gauges labelled with its pid."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged(os.environ[ENV]))
    return generate_latest(registry)
