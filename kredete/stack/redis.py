"""Redis 7 from Debian's `redis-server`, AOF on, ACL users: one standalone server, or the spec's Redis Cluster
(3 masters + 3 replicas, `redis-cli --cluster create`), chosen by `KREDETE_REDIS_TOPOLOGY` (default cluster).

ACL users on every node: `kredete` (the services: anything but administering the server), `agent` (the MCP
server: reads the cache, flags and leaderboards, writes only its rate-limit windows and query-embedding cache),
`admin` (cluster creation and failover commands; never used by the application) and `replication` (what a
replica needs to follow its master). The default user is off.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from config import ports
from config.paths import local_dir
from config.secrets import local_secrets
from kredete.stack.base import Server, StackError, apt_install, port_open, run

#: Node timeout of the local cluster: a master that does not answer for this long is failed over.
CLUSTER_NODE_TIMEOUT_MS = 2000


def _binary() -> str:
    found = shutil.which("redis-server") or ("/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server")
                                             else None)
    if not found:
        raise StackError("redis-server is not installed: run `kredete stack up` (installs Debian's redis-server)")
    return found


def _provision() -> None:
    if not shutil.which("redis-server") or not shutil.which("redis-cli"):
        apt_install("redis-server", "redis-tools")


def _version() -> str:
    out = run([_binary(), "--version"])
    return "Redis " + out.split("v=")[1].split()[0]


def acl_lines(*, cluster: bool) -> str:
    """The users of every node (see the module doc). Key patterns are prefixes, so hash-tagged keys such as
    `rl:{customer:...}:tool` stay inside them."""
    s = local_secrets()
    # A cluster client asks any node for the slot map; replicas may serve reads (READONLY).
    topology = " +cluster|slots +cluster|shards +cluster|nodes +cluster|info +cluster|myid +readonly +readwrite" \
               " +asking" if cluster else ""
    return (
        "user default off\n"
        f"user kredete on >{s['redis_default']} ~* &* +@all -@admin -@dangerous +info +flushdb +config|get"
        f"{topology}\n"
        # Flags and leaderboards are read-only for the agent (%R~); it writes only cache entries (filling and
        # refilling them), its rate-limit windows and query embeddings.
        f"user agent on >{s['redis_agent']} ~cache:* ~qemb:* ~rl:* %R~ff:* %R~lb:* &inval:* "
        "-@all +@read +@connection +zadd +zremrangebyscore +expire +pexpire +multi +exec +eval +evalsha "
        f"+script|load +setex +set +del +subscribe +unsubscribe{topology}\n"
        f"user admin on >{s['redis_admin']} ~* &* +@all\n"
        # Backups (kredete backup redis): may only stream an RDB snapshot (redis-cli --rdb) and ask when the last
        # one was saved; no key access.
        f"user backup on >{s['redis_backup']} -@all +ping +info +lastsave +replconf +sync +psync\n"
        f"user replication on >{s['redis_replication']} -@all +psync +replconf +ping\n"
        # prometheus-redis-exporter (monitoring): server statistics only, no key or value.
        f"user exporter on >{s['redis_exporter']} -@all +info +ping +config|get +slowlog|get +slowlog|len "
        "+latency|latest +latency|histogram +client|list +client|setname +cluster|info +cluster|nodes +dbsize "
        "+memory|stats +select\n"
    )


def _base_conf(port: int, data_dir: Path, *, appendonly: bool = True) -> str:
    s = local_secrets()
    return (
        f"bind 127.0.0.1\nport {port}\nprotected-mode yes\ndaemonize no\n"
        f"dir {data_dir}\n"
        f"appendonly {'yes' if appendonly else 'no'}\nappendfsync everysec\nappenddirname appendonly\n"
        "save 900 1\nsave 300 100\n"
        "maxmemory 512mb\nmaxmemory-policy volatile-lru\n"
        "notify-keyspace-events Ex\n"
        f"masteruser replication\nmasterauth {s['redis_replication']}\n"
    )


def _cli(port: int, *args: str, user: str = "kredete", timeout: float = 5) -> str:
    secret = {"kredete": "redis_default", "admin": "redis_admin"}[user]
    # The password goes through the environment: an argv shows in `ps` and in a failed command's error.
    return run(["redis-cli", "-p", str(port), "--user", user, "--no-auth-warning", *args], timeout=timeout,
               env={**os.environ, "REDISCLI_AUTH": local_secrets()[secret]})


def _info(port: int, section: str, user: str = "kredete") -> dict[str, str]:
    out = _cli(port, "INFO", section, user=user) if section != "cluster" else _cli(port, "CLUSTER", "INFO",
                                                                                    user=user)
    return dict(line.split(":", 1) for line in out.replace("\r", "").splitlines() if ":" in line)


def _serving(port: int) -> bool:
    """Answers PING and has loaded its dataset (a server still loading the AOF refuses commands)."""
    if not port_open(port):
        return False
    try:
        return _cli(port, "PING").strip() == "PONG" and _info(port, "persistence").get("loading") == "0"
    except StackError:
        return False


class RedisServer(Server):
    """One standalone Redis (`KREDETE_REDIS_TOPOLOGY=standalone`, or a scratch server for tests and benches)."""

    name = "redis"
    port = ports.REDIS
    #: False for one start only, to load a restored `dump.rdb` (with AOF on, Redis loads the AOF and ignores
    #: the RDB); the restore then turns AOF back on at run time, which rewrites it from the loaded data.
    appendonly = True

    def __init__(self, port: int | None = None, data_dir: Path | None = None) -> None:
        super().__init__()
        if port is not None:
            self.port = port
        if data_dir is not None:
            self.data_dir = data_dir

    def provision(self) -> None:
        _provision()

    def version(self) -> str:
        return _version()

    def conf(self) -> str:
        return _base_conf(self.port, self.data_dir, appendonly=self.appendonly) + acl_lines(cluster=False)

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "redis.conf"
        # Rewritten on every start so ports and passwords follow the current settings.
        conf.write_text(self.conf())
        os.chmod(conf, 0o600)

    def binary_name(self) -> str:
        return "redis-server"

    def command(self) -> tuple[list[str], dict[str, str]]:
        return [_binary(), str(self.data_dir / "redis.conf")], {}

    def url(self) -> str:
        return f"redis://kredete:{local_secrets()['redis_default']}@127.0.0.1:{self.port}/0"

    def healthy(self) -> bool:
        return _serving(self.port)


def bus_port(port: int) -> int:
    """The node's cluster-bus port: Redis's usual port + 10000, or port - 10000 where that would reach the
    ephemeral range (32768 and up), in which an outgoing connection can hold the port when the node binds it."""
    return port + 10_000 if port + 10_000 < 32_768 else port - 10_000


class RedisClusterNode(RedisServer):
    """One node of the cluster: a Redis server in cluster mode with its own `nodes.conf`."""

    def conf(self) -> str:
        return (_base_conf(self.port, self.data_dir, appendonly=self.appendonly) + acl_lines(cluster=True)
                + "cluster-enabled yes\ncluster-config-file nodes.conf\n"
                f"cluster-port {bus_port(self.port)}\n"
                f"cluster-node-timeout {CLUSTER_NODE_TIMEOUT_MS}\n"
                "cluster-announce-ip 127.0.0.1\n"
                # A slot without a master fails only its own keys; the rest of the cluster keeps serving.
                "cluster-require-full-coverage no\ncluster-allow-reads-when-down no\n"
                # Any replica may take over, however long it was cut off (a small local cluster has no spare).
                "cluster-replica-validity-factor 0\n")


class RedisClusterServer(Server):
    """The spec's shape: 3 masters and 3 replicas on `ports.REDIS_CLUSTER`, formed once, then restarted as is
    (each node keeps its `nodes.conf`). Healthy when every node serves and the cluster state is ok with
    3 masters that each have a replica."""

    name = "redis"
    masters = 3
    start_timeout = 60.0

    def __init__(self, node_ports: tuple[int, ...] | None = None, data_dir: Path | None = None) -> None:
        super().__init__()
        self.data_dir = data_dir or local_dir() / "redis-cluster"
        self.node_ports = tuple(node_ports or ports.REDIS_CLUSTER)
        self.port = self.node_ports[0]
        self.nodes = [RedisClusterNode(p, self.data_dir / f"node-{p}") for p in self.node_ports]

    def provision(self) -> None:
        _provision()

    def version(self) -> str:
        return _version() + " cluster"

    def binary_name(self) -> str:
        return "redis-server"

    def command(self) -> tuple[list[str], dict[str, str]]:
        return self.nodes[0].command()

    def url(self) -> str:
        return f"redis://kredete:{local_secrets()['redis_default']}@127.0.0.1:{self.port}/0?cluster=true"

    def pid(self) -> int | None:
        pids = [n.pid() for n in self.nodes]
        self.notes.extend(note for n in self.nodes for note in n.notes if note not in self.notes)
        return pids[0] if all(pids) else None

    def node_pids(self) -> dict[int, int | None]:
        return {n.port: n.pid() for n in self.nodes}

    def cluster_problem(self) -> str | None:
        """Why the cluster is not serving (None: ok, every master has a replica)."""
        try:
            info = _info(self.port, "cluster")
            if info.get("cluster_state") != "ok":
                return f"cluster_state {info.get('cluster_state')}"
            lines = _cli(self.port, "CLUSTER", "NODES").splitlines()
        except StackError as exc:
            return str(exc).splitlines()[0]
        masters = [ln for ln in lines if "master" in ln.split()[2] and "fail" not in ln.split()[2]
                   and len(ln.split()) > 8]
        replicas = [ln for ln in lines if "slave" in ln.split()[2] and "fail" not in ln.split()[2]]
        if len(masters) < self.masters or len(replicas) < len(self.nodes) - self.masters:
            return f"{len(masters)} masters with slots and {len(replicas)} replicas up"
        return None

    def healthy(self) -> bool:
        if not all(_serving(n.port) for n in self.nodes):
            self.problem = "a node is not serving"
            return False
        self.problem = self.cluster_problem() or ""
        return not self.problem

    def _formed(self) -> bool:
        try:
            return int(_info(self.port, "cluster").get("cluster_known_nodes", "1")) >= len(self.nodes)
        except StackError:
            return False

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        if not self._formed():
            addrs = [f"127.0.0.1:{p}" for p in self.node_ports]
            _cli(self.port, "--cluster", "create", *addrs, "--cluster-replicas", "1", "--cluster-yes",
                 user="admin", timeout=120)
            self.notes.append(f"cluster formed: {self.masters} masters + {len(self.nodes) - self.masters} replicas")
        deadline = time.monotonic() + self.start_timeout
        while not self.healthy():
            if time.monotonic() > deadline:
                raise StackError(f"redis cluster did not become healthy in {self.start_timeout:.0f}s: {self.problem}")
            time.sleep(0.25)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every node, and the nodes of this data dir on other ports (started under another port offset:
        a `stack down` without the offset `stack up` had would otherwise leave them running)."""
        known = {n.data_dir for n in self.nodes}
        strays = [RedisClusterNode(int(d.name.removeprefix("node-")), d)
                  for d in sorted(self.data_dir.glob("node-*"))
                  if d not in known and d.name.removeprefix("node-").isdigit()]
        for node in [*reversed(self.nodes), *strays]:
            node.stop(timeout)

    def reset(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def redis_server(topology: str) -> Server:
    """The stack's Redis for a topology setting."""
    return RedisClusterServer() if topology == "cluster" else RedisServer()
