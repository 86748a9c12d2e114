"""Prometheus metrics of the Redis layer. Labels are entry kinds and outcomes, never keys or user ids."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

#: Registered into the server's registry by the layer that exposes /metrics.
REGISTRY = CollectorRegistry(auto_describe=True)

CACHE_READS = Counter("kredete_cache_reads", "Cache-aside reads by entry kind and outcome "
                      "(local_hit, hit, negative_hit, miss, bypass)", ["kind", "outcome"], registry=REGISTRY)
CACHE_DROPPED = Counter("kredete_cache_entries_dropped", "Cache entries dropped and refilled, by reason "
                        "(corrupt, old_format)", ["kind", "reason"], registry=REGISTRY)
CACHE_BYPASS = Counter("kredete_cache_bypassed", "Reads sent to the source because Redis failed",
                       ["kind"], registry=REGISTRY)
INVALIDATIONS = Counter("kredete_cache_invalidations", "Invalidation messages handled by this process, by source "
                        "(event, reconnect)", ["source"], registry=REGISTRY)
