"""Circuit breakers: one per store adapter, so no caller waits out a timeout on a store known to be down.

    closed --(N consecutive outage failures)--> open --(probe running)--> half_open --(probe ok)--> closed
                                                  ^----------------(probe failed)------------'

* **closed**: calls go through; each outage failure (the adapter's `StoreUnavailable`: down, unreachable,
  timed out, backend down) counts, any answer of the store (rows, not found, a refused value) resets the count.
* **open**: calls are refused at once with `CircuitOpen` (a `StoreUnavailable`, so the guards answer it like
  any outage: the designed `Unavailable` message, audited). Meanwhile a background task probes the store
  with the adapter's cheapest real round trip, bounded by `probe_timeout_s`, every `probe_interval_s`
  (doubling up to `max_probe_interval_s`): no agent call ever pays for a probe.
* **half_open**: a probe is in flight (calls are still refused); it succeeding closes the breaker, failing
  opens it again. An adapter without a probe lets calls through as the trial instead: the first outcome
  closes or reopens it.

States are exported as `kredete_store_breaker_state{store}` (0 closed, 1 half-open, 2 open) in the default
Prometheus registry, with `kredete_store_breaker_opened_total` and `kredete_store_calls_refused_total`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from prometheus_client import Counter, Gauge

from stores.errors import StoreUnavailable

log = logging.getLogger("kredete.stores.breaker")

State = Literal["closed", "half_open", "open"]
STATE_VALUE: dict[str, int] = {"closed": 0, "half_open": 1, "open": 2}
Probe = Callable[[], Awaitable[Any]]

BREAKER_STATE = Gauge("kredete_store_breaker_state", "Circuit breaker of a store adapter: 0 closed, 1 half-open "
                      "(a probe is running), 2 open (calls refused at once)", ["store"])
BREAKER_OPENED = Counter("kredete_store_breaker_opened", "Times a store adapter's circuit breaker opened", ["store"])
CALLS_REFUSED = Counter("kredete_store_calls_refused", "Calls refused at once because the store's breaker was open",
                        ["store"])


class CircuitOpen(StoreUnavailable):
    """Refused without trying: the store failed repeatedly and has not answered a probe since."""


class Breaker:
    """The breaker of one adapter (`store` names it in metrics, health and errors; never an address)."""

    def __init__(self, store: str, *, failures: int | None = None, probe_interval_s: float | None = None,
                 max_probe_interval_s: float | None = None, probe_timeout_s: float | None = None,
                 probe: Probe | None = None) -> None:
        from config.settings import get_settings

        s = get_settings()
        self.store = store
        self.failures = failures or s.breaker_failures
        self.probe_interval_s = probe_interval_s or s.breaker_probe_interval_s
        self.max_probe_interval_s = max(max_probe_interval_s or s.breaker_max_probe_interval_s,
                                        self.probe_interval_s)
        self.probe_timeout_s = probe_timeout_s or s.breaker_probe_timeout_s
        self.probe = probe
        self.state: State = "closed"
        self.consecutive = 0
        self.opened_at: float | None = None
        #: Type name of the last outage failure (for health output and logs; never the driver's text).
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._trial_at = 0.0
        BREAKER_STATE.labels(store=store).set(0)

    # --- what adapters call ----------------------------------------------------------------------------
    def check(self) -> None:
        """Raise CircuitOpen when calls to the store are refused at once; else let the call through."""
        if self.state == "closed":
            return
        if self.probe is None:
            if self.state == "open" and time.monotonic() >= self._trial_at:
                self._set("half_open")  # no probe: calls are the trial; the first outcome decides
            if self.state == "half_open":
                return
        if self.probe is not None and self.state == "open":
            self._ensure_probing()
        CALLS_REFUSED.labels(store=self.store).inc()
        raise CircuitOpen(f"{self.store} is unavailable (circuit open after {self.consecutive} failures)",
                          store=self.store)

    def success(self) -> None:
        """The store answered (whatever it answered)."""
        self.consecutive = 0
        if self.state != "closed":
            self._close()

    def failure(self, exc: BaseException | None = None) -> None:
        """An outage failure (only those: an answer such as not-found or a refused value is a success)."""
        if isinstance(exc, CircuitOpen):
            return
        self.consecutive += 1
        self.last_error = type(exc).__name__ if exc is not None else "failure"
        if self.state == "half_open" and self.probe is None:
            self._open()  # the trial call failed
        elif self.state == "closed" and self.consecutive >= self.failures:
            self._open()

    @contextlib.contextmanager
    def guard(self, is_outage: Callable[[BaseException], bool]):
        """`with breaker.guard(classify): <one call>`: check first, then record what happened. `is_outage`
        tells an outage failure from an answer of the store."""
        self.check()
        try:
            yield
        except BaseException as exc:
            if isinstance(exc, Exception) and is_outage(exc):
                self.failure(exc)
            elif isinstance(exc, Exception):
                self.success()
            raise
        else:
            self.success()

    def describe(self) -> dict[str, Any]:
        """For /healthz: state, consecutive failures, seconds open, last failure type."""
        return {"state": self.state, "consecutive_failures": self.consecutive,
                "open_for_s": round(time.monotonic() - self.opened_at, 3) if self.opened_at else None,
                "last_error": self.last_error}

    async def close(self) -> None:
        """Stop probing (the adapter is closing)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # --- state -----------------------------------------------------------------------------------------
    def _set(self, state: State) -> None:
        self.state = state
        BREAKER_STATE.labels(store=self.store).set(STATE_VALUE[state])

    def _open(self) -> None:
        first = self.state == "closed"
        self._set("open")
        if first:
            self.opened_at = time.monotonic()
            BREAKER_OPENED.labels(store=self.store).inc()
            log.warning("%s: circuit open after %d consecutive failures (%s); calls are refused until it answers",
                        self.store, self.consecutive, self.last_error)
        self._trial_at = time.monotonic() + self.probe_interval_s
        self._ensure_probing()

    def _close(self) -> None:
        was_open_s = time.monotonic() - self.opened_at if self.opened_at else 0.0
        self._set("closed")
        self.consecutive = 0
        self.opened_at = None
        log.warning("%s: circuit closed (the store answers again after %.1fs)", self.store, was_open_s)

    def _ensure_probing(self) -> None:
        if self.probe is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._probe_loop(), name=f"breaker-probe-{self.store}")

    async def _probe_loop(self) -> None:
        delay = self.probe_interval_s
        while self.state != "closed" and self.probe is not None:
            await asyncio.sleep(delay)
            if self.state == "closed":
                return
            self._set("half_open")
            try:
                await asyncio.wait_for(self.probe(), self.probe_timeout_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure of a probe means: still down
                self.last_error = type(exc).__name__
                if self.state == "half_open":
                    self._set("open")
                delay = min(delay * 2, self.max_probe_interval_s)
                continue
            self._close()
            return


def states(breakers: dict[str, Breaker | None]) -> dict[str, dict[str, Any]]:
    """`describe()` of each named breaker that exists."""
    return {name: b.describe() for name, b in breakers.items() if b is not None}
