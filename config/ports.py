"""Ports of the local stack: away from the defaults so system services never clash.

`KREDETE_PORT_<SERVER>` moves one server; `KREDETE_PORT_OFFSET` shifts every default at once, so two
checkouts (or a test's scratch stack) can run their own stacks side by side.
"""

from __future__ import annotations

import os

OFFSET = int(os.environ.get("KREDETE_PORT_OFFSET", "0"))


def _port(name: str, default: int) -> int:
    return int(os.environ.get(f"KREDETE_PORT_{name.upper()}", default + OFFSET))


POSTGRES = _port("postgres", 55432)
POSTGRES_REPLICA = _port("postgres_replica", 55433)
# Backups and HA (ops-backups): the second read replica, the HA profile's Patroni members (PostgreSQL and
# REST API) and its three etcd members (client and peer).
POSTGRES_REPLICA2 = _port("postgres_replica2", 55434)
HA_POSTGRES = (_port("ha_postgres1", 55435), _port("ha_postgres2", 55436), _port("ha_postgres3", 55437))
HA_PATRONI_API = (_port("ha_patroni1", 58008), _port("ha_patroni2", 58009), _port("ha_patroni3", 58010))
ETCD_CLIENT = (_port("etcd1", 58002), _port("etcd2", 58004), _port("etcd3", 58006))
ETCD_PEER = (_port("etcd1_peer", 58003), _port("etcd2_peer", 58005), _port("etcd3_peer", 58007))
REDIS = _port("redis", 56379)
# Redis Cluster (redis engineer): 3 masters + 3 replicas on REDIS + 2..7 (56381-56386 by default), so moving
# KREDETE_PORT_REDIS (as scratch stacks do) moves the cluster with it; each can still be set on its own.
REDIS_CLUSTER = tuple(int(os.environ.get(f"KREDETE_PORT_REDIS_CLUSTER_{i}", REDIS + 1 + i)) for i in range(1, 7))
MONGO = _port("mongo", 57017)
MONGO_DEBUG = _port("mongo_debug", 57018)
OPENSEARCH = _port("opensearch", 59200)
OPENSEARCH_TRANSPORT = _port("opensearch_transport", 59300)
S3 = _port("s3", 59000)
S3_CONSOLE = _port("s3_console", 59001)
S3_DR = _port("s3_dr", 59010)
S3_DR_CONSOLE = _port("s3_dr_console", 59011)

# S3 (s3 engineer): the cold tier MinIO (remote tier of the lifecycle transitions) and the access-log receiver.
S3_COLD = _port("s3_cold", 59020)
S3_COLD_CONSOLE = _port("s3_cold_console", 59021)
S3_AUDIT = _port("s3_audit", 59022)
