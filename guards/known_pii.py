"""A bounded per-process copy of the known PII (names, addresses) the output redactor looks up for every call.

Kept only while the process follows the invalidation channel (Redis pub/sub `inval:events`): `live()` is the
subscriber's connected flag, and while it is clear every lookup goes to the source and nothing is held (the
subscriber also calls `clear` on every (re)connection and disconnection). A message naming a user (any key that
holds their id: `cache:{<user id>}:profile` from a `users` change event, or the profile keys a DSR erasure
announces) drops that user's copy. A writer that announces nothing (a direct SQL update, a seeder) is covered by
the copy's age: an entry is served for at most `ttl_s` seconds after its lookup started.

A lookup that was in flight when an invalidation arrived is returned to its call but not kept (it may have read
the value from before the change). Users the source does not know are not kept either.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol
from uuid import UUID

#: Default age bound of a copy (seconds): the services' local cache tier keeps its copies as long (30 s).
TTL_S = 30.0
MAX_USERS = 4096
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

Pii = dict[str, list[str]]


class KnownPiiSource(Protocol):
    async def known_pii(self, user_ids: list[UUID]) -> dict[UUID, Pii]: ...


def users_named(keys: Iterable[str]) -> set[UUID]:
    """The user ids an invalidation message's keys name (a key may name none: FX rates)."""
    return {UUID(m) for k in keys for m in _UUID.findall(str(k))}


class KnownPiiCache:
    """`known_pii` with a per-process copy (see the module docstring); `hits` and `misses` count users."""

    def __init__(self, source: KnownPiiSource, *, live: Callable[[], bool], latest: KnownPiiSource | None = None,
                 ttl_s: float = TTL_S, max_users: int = MAX_USERS, clock: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        #: Where copies to keep are read (the primary: a replica may not have applied an invalidated change yet).
        self.latest = latest or source
        self.live = live
        self.ttl_s = ttl_s
        self.max_users = max_users
        self.clock = clock
        self._held: OrderedDict[UUID, tuple[float, Pii]] = OrderedDict()
        self._epoch = 0
        self.hits = 0
        self.misses = 0

    async def known_pii(self, user_ids: Sequence[UUID]) -> dict[UUID, Pii]:
        if self.ttl_s <= 0 or not self.live():
            self._held.clear()
            return await self.source.known_pii(list(user_ids))
        now = self.clock()
        out: dict[UUID, Pii] = {}
        missing: list[UUID] = []
        for uid in dict.fromkeys(user_ids):
            entry = self._held.get(uid)
            if entry is not None and entry[0] > now:
                self._held.move_to_end(uid)
                out[uid] = entry[1]
            else:
                missing.append(uid)
        self.hits += len(out)
        if not missing:
            return out
        self.misses += len(missing)
        epoch, started = self._epoch, self.clock()
        got = await self.latest.known_pii(missing)
        out.update(got)
        # Kept only when nothing was invalidated meanwhile and the channel is still followed.
        if epoch == self._epoch and self.live():
            for uid, pii in got.items():
                self._held[uid] = (started + self.ttl_s, pii)
                self._held.move_to_end(uid)
            while len(self._held) > self.max_users:
                self._held.popitem(last=False)
        return out

    def drop(self, user_ids: Iterable[UUID]) -> None:
        """Forget these users' copies (and keep no lookup that is in flight now)."""
        self._epoch += 1
        for uid in user_ids:
            self._held.pop(uid, None)

    def drop_keys(self, keys: list[str]) -> None:
        """An invalidation message's keys: forget every user they name."""
        self.drop(users_named(keys))

    def clear(self) -> None:
        self._epoch += 1
        self._held.clear()

    def __len__(self) -> int:
        return len(self._held)
