"""etcd (Debian `etcd-server`): the three-member cluster Patroni keeps its leader lock in (HA profile)."""

from __future__ import annotations

import json
import shutil
import urllib.request

from config import ports
from kredete.stack.base import Server, StackError, apt_install, port_open, run

BIN = "/usr/bin/etcd"
MEMBERS = 3
CLUSTER_TOKEN = "kredete-ha"  # noqa: S105 - etcd's cluster name, not a secret


def ensure_installed() -> None:
    if not shutil.which("etcd"):
        apt_install("etcd-server", "etcd-client")


def client_urls() -> list[str]:
    return [f"http://127.0.0.1:{p}" for p in ports.ETCD_CLIENT]


def cluster_healthy(timeout: float = 2.0) -> bool:
    """True when a member answers `/health` with a quorum (a leader elected)."""
    for url in client_urls():
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=timeout) as resp:  # noqa: S310
                if json.loads(resp.read()).get("health") == "true":
                    return True
        except (OSError, ValueError):
            continue
    return False


class EtcdMember(Server):
    """One member; healthy as soon as it listens on its client port (a lone member waits for the others to
    form a quorum, so per-member health cannot require one)."""

    start_timeout = 30.0

    def __init__(self, index: int) -> None:
        self.index = index
        self.name = f"etcd{index + 1}"
        self.port = ports.ETCD_CLIENT[index]
        self.peer_port = ports.ETCD_PEER[index]
        super().__init__()

    def provision(self) -> None:
        ensure_installed()

    def version(self) -> str:
        out = run([BIN, "--version"], timeout=10)
        return "etcd " + out.split()[2]

    def binary_name(self) -> str:
        return "etcd"

    def command(self) -> tuple[list[str], dict[str, str]]:
        cluster = ",".join(f"etcd{i + 1}=http://127.0.0.1:{p}" for i, p in enumerate(ports.ETCD_PEER))
        return [BIN, "--name", self.name, "--data-dir", str(self.data_dir / "data"),
                "--listen-client-urls", f"http://127.0.0.1:{self.port}",
                "--advertise-client-urls", f"http://127.0.0.1:{self.port}",
                "--listen-peer-urls", f"http://127.0.0.1:{self.peer_port}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer_port}",
                "--initial-cluster", cluster, "--initial-cluster-token", CLUSTER_TOKEN,
                "--initial-cluster-state", "new", "--log-level", "warn"], {}

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def healthy(self) -> bool:
        # etcd listens at once but serves requests only once the members have a quorum, which a lone
        # member waits for: the port is what one member can promise; wait_for_quorum checks the cluster.
        return port_open(self.port)


def wait_for_quorum(timeout: float = 60.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cluster_healthy():
            return
        time.sleep(0.5)
    raise StackError(f"etcd has no quorum after {timeout:.0f}s: are etcd1..etcd{MEMBERS} running?")
