"""The services of one process over its connected stores: one cache-aside front (following invalidations), the
credit, user and FX services on it, and the feature-flag provider. Used by the MCP server (as the agent roles:
reads only) and by service processes alike."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from config.settings import Settings
from services.caching import read_through
from services.credit import CreditService
from services.flags import RedisFlagProvider, install_provider
from services.fx import FXService
from services.users import UserService
from stores.cache.aside import ReadThroughCache
from stores.registry import Stores

log = logging.getLogger("kredete.services")


@dataclass
class ServiceSet:
    cache: ReadThroughCache
    credit: CreditService
    users: UserService
    fx: FXService
    flags: RedisFlagProvider

    async def close(self) -> None:
        await self.flags.stop()
        await self.cache.close()


async def start_services(stores: Stores, settings: Settings, *, flag_domain: str = "kredete") -> ServiceSet:
    """Build the services; a Redis that is down at start leaves the cache bypassed and the flags on their
    defaults until it answers (neither raises)."""
    cache = read_through(stores.cache, settings)
    try:
        await cache.follow_invalidations()
    except Exception as exc:  # the subscriber retries on its own; reads bypass meanwhile
        log.warning("cache invalidations not followed yet: %s", type(exc).__name__)
    provider = await install_provider(stores.cache, domain=flag_domain)
    return ServiceSet(cache=cache, credit=CreditService(stores.mongo, cache=cache),
                      users=UserService(stores.postgres, cache=cache), fx=FXService(stores.postgres, cache=cache),
                      flags=provider)
