"""The `ha` profile's search cluster: three OpenSearch nodes on one machine, one per availability zone.

Each node is the same Maven Central assembly as the single node (`kredete.stack.opensearch`), its own JVM,
data dir (`.local/<node>/`), HTTP and transport ports. They share one cluster name and find each other
through `discovery.seed_hosts` (every node's transport port). A node carries `node.attr.zone` (az-1..3),
and shard allocation awareness on that attribute puts a primary and its replicas in different zones, as
the managed service does across AZs.

A new cluster is bootstrapped (`cluster.initial_cluster_manager_nodes`) only while no node of it has ever
joined one: each node records the UUID of the cluster it joined (`cluster-uuid` in its data dir), so a
restarted or reset node joins the running cluster instead of founding another. A node whose configuration
would split the cluster (another cluster name, or data of another cluster) is refused at start with the
reason, before or while it starts.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import os
import signal
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config import ports
from kredete.stack.base import ServerStatus, StackError, listening, pid_alive, side_by_side
from kredete.stack.opensearch import OpenSearchServer

#: One name for every node of the cluster; a node configured with another is refused at start.
CLUSTER_NAME = os.environ.get("KREDETE_OPENSEARCH_CLUSTER_NAME", "kredete-ha")

#: Log lines of a node that will never join the cluster as configured (and what they mean).
REFUSALS = {
    "does not match local cluster name": "its cluster name differs from the other nodes'",
    "previously joined a cluster with UUID": "its data belongs to another cluster than the running one",
}


#: Starts tried when the port was taken at the moment of binding (see `_wait_ports_free`).
BIND_ATTEMPTS = 3


@dataclass(frozen=True)
class NodeSpec:
    name: str
    http: int
    transport: int
    zone: str


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    nodes: tuple[NodeSpec, ...]
    #: Heap of each node (None: KREDETE_OPENSEARCH_HEAP).
    heap: str | None = None

    @property
    def seeds(self) -> list[str]:
        return [f"127.0.0.1:{n.transport}" for n in self.nodes]

    def url(self) -> str:
        """Every node's URL, comma-separated (what KREDETE_OPENSEARCH_URL takes)."""
        return ",".join(f"http://127.0.0.1:{n.http}" for n in self.nodes)


def ha_cluster() -> ClusterSpec:
    """The cluster of `kredete stack up --profile ha`."""
    return ClusterSpec(CLUSTER_NAME, tuple(NodeSpec(f"opensearch-{i}", http, transport, f"az-{i}")
                                           for i, (http, transport) in enumerate(ports.OPENSEARCH_NODES, 1)))


def test_cluster() -> ClusterSpec:
    """A scratch cluster for the cluster tests: own data dirs, and HTTP and transport ports drawn from the
    scratch range (`ports.free_port`), beside whatever the stack runs."""
    drawn: list[int] = []
    while len(drawn) < 6:
        port = ports.free_port()
        if port not in drawn:
            drawn.append(port)
    return ClusterSpec("kredete-test",
                       tuple(NodeSpec(f"opensearch-test-{i}", drawn[2 * i - 2], drawn[2 * i - 1], f"az-{i}")
                             for i in (1, 2, 3)), heap="384m")


def get_json(url: str, timeout: float = 3.0) -> Any:
    """GET a JSON document from a node (None when it does not answer or answers an error).

    Only a port something listens on is dialled: polling a node that is still starting could otherwise
    connect to itself (see `base.port_open`) and hold the very port the node is about to bind.
    """
    port = urllib.parse.urlsplit(url).port
    if port is not None and not listening(port):
        return None
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - http://127.0.0.1 only
            return json.loads(resp.read())
    except (OSError, ValueError, http.client.HTTPException):
        return None


def port_held(port: int) -> bool:
    """True while any TCP socket (listening or connected, not TIME_WAIT) uses `port` locally on 127.0.0.1."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if int(parts[1].rsplit(":", 1)[1], 16) == port and parts[3] not in ("06", "07"):
                    return True
    return False


class OpenSearchNode(OpenSearchServer):
    """One node of a multi-node cluster."""


    def __init__(self, cluster: ClusterSpec, index: int, *, cluster_name: str | None = None) -> None:
        spec = cluster.nodes[index]
        self.name = spec.name
        self.port = spec.http
        self.transport_port = spec.transport
        self.spec = spec
        self.cluster = cluster
        self.cluster_name = cluster_name or cluster.name
        self.node_name = spec.name
        if cluster.heap:
            self.heap = cluster.heap
        #: `stack up` starts the nodes of one cluster at the same time.
        self.start_group = f"opensearch:{cluster.name}"
        self._log_offset = 0
        super().__init__()

    # --- configuration ------------------------------------------------------------------------
    def discovery_config(self) -> str:
        zones = ",".join(n.zone for n in self.cluster.nodes)
        lines = [f"discovery.seed_hosts: [{', '.join(self.cluster.seeds)}]",
                 f"node.attr.zone: {self.spec.zone}",
                 "cluster.routing.allocation.awareness.attributes: zone",
                 # Forced awareness: with a zone gone, its copies wait for it instead of piling up in the others.
                 f"cluster.routing.allocation.awareness.force.zone.values: {zones}"]
        if not any(n.joined_uuid() for n in self.members()):
            lines.append(f"cluster.initial_cluster_manager_nodes: [{', '.join(n.name for n in self.cluster.nodes)}]")
        return "".join(line + "\n" for line in lines)

    def members(self) -> list[OpenSearchNode]:
        """Every node of this cluster, this one included (fresh objects: they read pid files and markers)."""
        return [self if n.name == self.name else OpenSearchNode(self.cluster, i)
                for i, n in enumerate(self.cluster.nodes)]

    @property
    def _uuid_file(self) -> Path:
        return self.data_dir / "cluster-uuid"

    def joined_uuid(self) -> str | None:
        """UUID of the cluster this node's data joined (None: never joined one)."""
        with contextlib.suppress(OSError):
            return self._uuid_file.read_text().strip() or None
        return None

    # --- health -------------------------------------------------------------------------------
    def info(self) -> dict[str, Any] | None:
        return get_json(f"{self.url()}/", timeout=2.0)

    def cluster_health(self) -> dict[str, Any] | None:
        """The cluster's health as this node sees it (None: not in a cluster with a manager, or down)."""
        return get_json(f"{self.url()}/_cluster/health?cluster_manager_timeout=2s", timeout=4.0)

    def healthy(self) -> bool:
        health = self.cluster_health()
        if not health or health.get("status") not in ("green", "yellow"):
            return False
        if not self.joined_uuid():
            info = self.info() or {}
            if info.get("cluster_uuid", "_na_") != "_na_":
                self._uuid_file.write_text(info["cluster_uuid"] + "\n")
        return True

    def status(self) -> ServerStatus:
        row = super().status()
        if row.pid is None:
            return row
        note = [f"zone {self.spec.zone}"]
        health = self.cluster_health()
        if health:
            manager = get_json(f"{self.url()}/_cat/cluster_manager?format=json", timeout=3.0) or [{}]
            note.append(f"cluster {health.get('cluster_name')} {health.get('status')}: "
                        f"{health.get('number_of_nodes')}/{len(self.cluster.nodes)} nodes, "
                        f"{health.get('unassigned_shards')} unassigned shards")
            if manager[0].get("node") == self.node_name:
                note.append("cluster manager")
        else:
            note.append("not in a cluster with a manager")
        return row.model_copy(update={"note": "; ".join([*note, *([row.note] if row.note else [])])})

    # --- start with the split-brain checks ----------------------------------------------------
    def start(self) -> None:
        self._preflight()
        for attempt in range(BIND_ATTEMPTS):
            self._wait_ports_free()
            with contextlib.suppress(OSError):
                self._log_offset = self.log_file.stat().st_size
            try:
                super().start()
                return
            except StackError:
                if attempt + 1 < BIND_ATTEMPTS and self._bind_failed():
                    time.sleep(2)
                    continue
                raise

    def _wait_ports_free(self, timeout: float = 15.0) -> None:
        """Wait while a port of this node is briefly held by something else.

        Our ports lie in Linux's ephemeral range (32768-60999): while a node is down, its peers keep dialling
        its transport port, and a dial can be given that very port as its source and connect to itself
        (TCP self-connect), holding the port until the peer drops it.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.pid() is None and (
                port_held(self.port) or port_held(self.transport_port)):
            time.sleep(0.5)

    def _bind_failed(self) -> bool:
        with contextlib.suppress(OSError), self.log_file.open("rb") as f:
            f.seek(self._log_offset)
            return b"Address already in use" in f.read()
        return False

    def _preflight(self) -> None:
        """Refuse a node that would not join the running cluster (before starting a JVM)."""
        for peer in self.members():
            if peer.name == self.name or peer.pid() is None:
                continue
            info = peer.info()
            if not info:
                continue
            if info.get("cluster_name") != self.cluster_name:
                raise StackError(
                    f"{self.name} refused: it is configured for cluster {self.cluster_name!r}, but {peer.name} "
                    f"(port {peer.port}) runs cluster {info.get('cluster_name')!r}. Every node of one cluster needs "
                    "the same name (KREDETE_OPENSEARCH_CLUSTER_NAME): a node with another would form a cluster "
                    "of its own (split brain)")
            running = info.get("cluster_uuid", "_na_")
            mine = self.joined_uuid()
            if mine and running != "_na_" and mine != running:
                raise StackError(
                    f"{self.name} refused: its data belongs to cluster {mine}, but the running nodes form cluster "
                    f"{running}; a node cannot move between clusters. Reset it (`kredete stack reset --only "
                    f"{self.name} --yes`): it then joins and gets its shards back from the other nodes")

    def _refusal(self) -> str | None:
        """Why the node's log says it will never join (the checks above cannot see every case)."""
        with contextlib.suppress(OSError), self.log_file.open("rb") as f:
            f.seek(self._log_offset)
            text = f.read().decode(errors="replace")
            for needle, meaning in REFUSALS.items():
                if needle in text:
                    line = next(ln for ln in text.splitlines() if needle in ln)
                    return f"{meaning} ({line.strip()[-300:]})"
        return None

    def _wait_healthy(self, pid: int, timeout: float) -> bool:
        """Healthy = joined a cluster with a manager. A node that cannot form a cluster yet (too few of its
        peers run for a quorum) counts as started once it answers, so the next node can start."""
        deadline = time.monotonic() + timeout
        quorum = len(self.cluster.nodes) // 2 + 1
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return False
            why = self._refusal()
            if why:
                self.stop()
                raise StackError(f"{self.name} refused at start: {why}")
            if self.healthy():
                return True
            running = sum(1 for n in self.members() if n.name == self.name or n.pid())
            if running < quorum and self.info() is not None:
                self.notes.append(f"waiting for {quorum - running} more node(s) to form the cluster")
                return True
            time.sleep(0.5)
        return False


# --- the cluster as a whole ----------------------------------------------------------------------
class SearchCluster:
    """Operations on a whole cluster: start and stop, health, kill a node, rolling restart."""

    def __init__(self, spec: ClusterSpec | None = None) -> None:
        self.spec = spec or ha_cluster()
        self.nodes = [OpenSearchNode(self.spec, i) for i in range(len(self.spec.nodes))]

    def url(self) -> str:
        return self.spec.url()

    def node(self, name: str) -> OpenSearchNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise StackError(f"no node {name!r} in cluster {self.spec.name}; nodes: {[n.name for n in self.nodes]}")

    def start(self) -> float:
        """Provision once, start every node at the same time, wait for green; returns the seconds it took."""
        t0 = time.monotonic()
        self.nodes[0].provision()
        self._each(lambda node: node.start())
        self.wait_status("green", 180)
        return time.monotonic() - t0

    def stop(self) -> None:
        """Every node at the same time: one after another, their JVMs' graceful shutdowns added up."""
        self._each(lambda node: node.stop())

    def reset(self) -> None:
        self._each(lambda node: node.reset())

    def _each(self, action: Callable[[OpenSearchNode], None]) -> None:
        side_by_side([functools.partial(action, node) for node in self.nodes])

    # --- requests to whichever node answers -----------------------------------------------------
    def request(self, method: str, path: str, body: Any = None, *, avoid: str | None = None,
                timeout: float = 30.0) -> Any:
        """A JSON request to the first running node (other than `avoid`) that answers."""
        last: Exception | None = None
        for node in self.nodes:
            if node.name == avoid or node.pid() is None or not listening(node.port):
                continue
            data = None if body is None else json.dumps(body).encode()
            req = urllib.request.Request(f"{node.url()}{path}", data=data, method=method,  # noqa: S310
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - http://127.0.0.1
                    return json.loads(resp.read() or b"null")
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:500].decode(errors="replace")
                raise StackError(f"{method} {path} on {node.name}: HTTP {exc.code} {detail}") from exc
            except (OSError, http.client.HTTPException) as exc:
                last = exc
        raise StackError(f"no node of cluster {self.spec.name} answers ({last})")

    def health(self, *, avoid: str | None = None) -> dict[str, Any]:
        return self.request("GET", "/_cluster/health", avoid=avoid)

    def wait_status(self, status: str, timeout: float, *, avoid: str | None = None) -> float:
        """Wait until the cluster is `status` (or better); returns the seconds waited."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        rank = {"red": 0, "yellow": 1, "green": 2}
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = self.health(avoid=avoid)
                if rank.get(last.get("status"), -1) >= rank[status]:
                    return time.monotonic() - t0
            except StackError as exc:
                last = str(exc)
            time.sleep(0.5)
        raise StackError(f"cluster {self.spec.name} not {status} after {timeout:.0f}s: {last}")

    def manager(self) -> str:
        """Name of the elected cluster manager."""
        return self.request("GET", "/_cat/cluster_manager?format=json")[0]["node"]

    def memory_mb(self) -> dict[str, float]:
        """Resident memory of each running node's JVM, in MB."""
        out: dict[str, float] = {}
        for node in self.nodes:
            pid = node.pid()
            if pid:
                with contextlib.suppress(OSError, StopIteration):
                    line = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines()
                                if ln.startswith("VmRSS"))
                    out[node.name] = round(int(line.split()[1]) / 1024, 1)
        return out

    # --- faults and maintenance -----------------------------------------------------------------
    def kill(self, name: str) -> int:
        """kill -9 a node's JVM (no shutdown, no flush: a machine or AZ lost); returns its pid."""
        node = self.node(name)
        pid = node.pid()
        if pid is None:
            raise StackError(f"{name} is not running")
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        return pid

    def rolling_restart(self, on_step: Callable[[str], None] = lambda _: None, *, timeout: float = 300) -> list[dict]:
        """Restart every node, one at a time, the way OpenSearch documents it; searches keep being served.

        Per node: wait for green; allocate only primaries (so its replicas are not rebuilt elsewhere while it is
        down); flush; stop it gracefully (SIGTERM); start it and wait until it rejoined; allow allocation again;
        wait for green before the next node. Returns the seconds each step took, per node.
        """
        steps: list[dict] = []
        for node in self.nodes:
            t0 = time.monotonic()
            self.wait_status("green", timeout)
            self.request("PUT", "/_cluster/settings",
                         {"persistent": {"cluster.routing.allocation.enable": "primaries"}}, avoid=node.name)
            self.request("POST", "/_flush", avoid=node.name)
            on_step(f"{node.name}: stopping")
            node.stop()
            t_down = time.monotonic()
            on_step(f"{node.name}: starting")
            node.start()
            t_up = time.monotonic()
            self.request("PUT", "/_cluster/settings",
                         {"persistent": {"cluster.routing.allocation.enable": None}}, avoid=node.name)
            green = self.wait_status("green", timeout)
            on_step(f"{node.name}: back, cluster green after {green:.1f}s")
            steps.append({"node": node.name, "down_s": round(t_up - t_down, 1), "green_s": round(green, 1),
                          "total_s": round(time.monotonic() - t0, 1)})
        return steps
