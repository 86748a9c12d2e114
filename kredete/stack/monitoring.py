"""The monitoring servers of a stack plan, in start order: exporters, collector, Alertmanager, Prometheus."""

from __future__ import annotations

from kredete.stack.alertmanager import AlertmanagerServer
from kredete.stack.base import Server
from kredete.stack.exporters import CollectorServer, PostgresExporter, RedisExporter
from kredete.stack.prometheus import PrometheusServer


def monitoring_servers(data: list[Server]) -> list[Server]:
    """The monitoring stack for these data servers, in start order: exporters, collector, Alertmanager,
    Prometheus last (it scrapes them all)."""
    from kredete.stack.postgres import PostgresPrimary, _PostgresBase
    from kredete.stack.redis import RedisClusterServer, RedisServer

    pg = [s for s in data if isinstance(s, _PostgresBase)]
    out: list[Server] = [PostgresExporter(s, i, role="primary" if isinstance(s, PostgresPrimary) else "replica")
                         for i, s in enumerate(pg)]
    redis = [s for s in data if isinstance(s, RedisServer | RedisClusterServer)]
    if redis:
        out.append(RedisExporter(redis))
    out += [CollectorServer(), AlertmanagerServer(), PrometheusServer()]
    return out


def is_monitoring(server: Server) -> bool:
    """One of the monitoring servers (they start after the data servers they watch)."""
    return isinstance(server, PostgresExporter | RedisExporter | CollectorServer | AlertmanagerServer
                      | PrometheusServer)
