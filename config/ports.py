"""Ports of the local stack: away from the defaults so system services never clash.

Every default lies in 20000-24999, below Linux's ephemeral range (32768-60999): a port in that range can be
taken at any moment by the local end of some outgoing connection, and a server then fails to bind it.

`KREDETE_PORT_<SERVER>` moves one server; `KREDETE_PORT_OFFSET` shifts every default at once, so two
checkouts (or a test's scratch stack) can run their own stacks side by side.
"""

from __future__ import annotations

import os
import random
import socket

OFFSET = int(os.environ.get("KREDETE_PORT_OFFSET", "0"))


def _port(name: str, default: int) -> int:
    return int(os.environ.get(f"KREDETE_PORT_{name.upper()}", default + OFFSET))


POSTGRES = _port("postgres", 20432)
POSTGRES_REPLICA = _port("postgres_replica", 20433)
# Backups and HA (ops-backups): the second read replica, the HA profile's Patroni members (PostgreSQL and
# REST API) and its three etcd members (client and peer).
POSTGRES_REPLICA2 = _port("postgres_replica2", 20434)
HA_POSTGRES = (_port("ha_postgres1", 20435), _port("ha_postgres2", 20436), _port("ha_postgres3", 20437))
HA_PATRONI_API = (_port("ha_patroni1", 23008), _port("ha_patroni2", 23009), _port("ha_patroni3", 23010))
ETCD_CLIENT = (_port("etcd1", 23002), _port("etcd2", 23004), _port("etcd3", 23006))
ETCD_PEER = (_port("etcd1_peer", 23003), _port("etcd2_peer", 23005), _port("etcd3_peer", 23007))
REDIS = _port("redis", 21379)
# Redis Cluster (redis engineer): 3 masters + 3 replicas on REDIS + 2..7 (21381-21386 by default), so moving
# KREDETE_PORT_REDIS (as scratch stacks do) moves the cluster with it; each can still be set on its own.
REDIS_CLUSTER = tuple(int(os.environ.get(f"KREDETE_PORT_REDIS_CLUSTER_{i}", REDIS + 1 + i)) for i in range(1, 7))
MONGO = _port("mongo", 22017)
MONGO_DEBUG = _port("mongo_debug", 22018)
OPENSEARCH = _port("opensearch", 24200)
OPENSEARCH_TRANSPORT = _port("opensearch_transport", 24300)
# The HA profile's three-node search cluster (opensearch; the cluster tests' scratch nodes use free_port).
OPENSEARCH_NODES = tuple((_port(f"opensearch_{i}", 24200 + i), _port(f"opensearch_{i}_transport", 24300 + i))
                         for i in (1, 2, 3))
S3 = _port("s3", 24000)
S3_CONSOLE = _port("s3_console", 24001)
S3_DR = _port("s3_dr", 24010)
S3_DR_CONSOLE = _port("s3_dr_console", 24011)

# S3 (s3 engineer): the cold tier MinIO (remote tier of the lifecycle transitions) and the access-log receiver.
S3_COLD = _port("s3_cold", 24020)
S3_COLD_CONSOLE = _port("s3_cold_console", 24021)
S3_AUDIT = _port("s3_audit", 24022)


# --- monitoring (Prometheus, Alertmanager, exporters): 23100-23139 -------------------------------------
PROMETHEUS = _port("prometheus", 23100)
ALERTMANAGER = _port("alertmanager", 23101)
REDIS_EXPORTER = _port("redis_exporter", 23120)
COLLECTOR = _port("collector", 23130)


def postgres_exporter(server: str, index: int) -> int:
    """Port of the postgres_exporter of one PostgreSQL server of the stack (the primary is index 0)."""
    return _port(f"{server.replace('-', '_')}_exporter", 23110 + index)


#: Where `free_port` draws scratch ports from: below the ephemeral range and clear of the defaults above.
SCRATCH_RANGE = (15_000, 19_999)


def free_port() -> int:
    """A port nothing listens on now, for a scratch server (tests, drills, benches).

    Binding port 0 would hand out an ephemeral port, which an outgoing connection can take again before the
    server starts; this draws from `SCRATCH_RANGE` instead and checks the port can be bound.
    """
    rng = random.SystemRandom()
    for _ in range(500):
        port = rng.randint(*SCRATCH_RANGE)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port in {SCRATCH_RANGE}")
