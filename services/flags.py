"""Feature flags: an OpenFeature provider on Redis, and the flags the code uses.

A definition (stored by `stores.cache.flags.FlagStore`, set with `kredete flags set`):

    {"kind": "boolean" | "string" | "integer" | "float" | "object",
     "variants": {"on": true, "off": false},      # name -> value
     "default": "off",                             # served when no rule or rollout matches
     "enabled": true,                              # kill switch: false serves `off_variant` to everyone
     "off_variant": "off",                         # (default: `default`)
     "rules": [{"attribute": "corridor", "in": ["US-NG"], "variant": "on"}],   # first match wins
     "rollout": [{"variant": "on", "percent": 25}],                           # sticky per targeting key
     "description": "..."}

Targeting attributes come from the evaluation context (`role`, `corridor`, ...). A rollout buckets the targeting
key (the user id, or a staff subject) by a hash of flag key + targeting key, so a user keeps their variant and
raising the percentage only adds users. The provider evaluates a snapshot held in memory, refreshed when a flag
changes (the `ff:flags` invalidation message) and every `refresh_s`; with Redis down it keeps the last snapshot.
An unknown flag gives the caller's default, logged once per key.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from typing import Any, Literal

from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import FlagNotFoundError, ParseError, TypeMismatchError
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider import AbstractProvider, Metadata
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from stores.cache.client import CacheStore
from stores.cache.flags import FLAGS_KEY, FlagStore
from stores.cache.pubsub import InvalidationSubscriber
from stores.errors import StoreError

log = logging.getLogger("kredete.flags")

Kind = Literal["boolean", "string", "integer", "float", "object"]
_PY_TYPES: dict[str, tuple[type, ...]] = {"boolean": (bool,), "string": (str,), "integer": (int,),
                                          "float": (float, int), "object": (dict, list)}


class Rule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    attribute: str = Field(min_length=1, max_length=40)
    values: list[str] = Field(alias="in", min_length=1, max_length=500)
    variant: str


class Split(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    variant: str
    percent: float = Field(ge=0, le=100)


class FlagDefinition(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Kind
    variants: dict[str, Any] = Field(min_length=1)
    default: str
    enabled: bool = True
    off_variant: str | None = None
    rules: list[Rule] = Field(default_factory=list, max_length=100)
    rollout: list[Split] = Field(default_factory=list, max_length=20)
    description: str = Field("", max_length=500)

    @model_validator(mode="after")
    def _consistent(self) -> FlagDefinition:
        names = set(self.variants)
        used = {self.default, self.off_variant or self.default, *(r.variant for r in self.rules),
                *(s.variant for s in self.rollout)}
        if used - names:
            raise ValueError(f"unknown variants {sorted(used - names)}; defined: {sorted(names)}")
        bad = [n for n, v in self.variants.items() if not isinstance(v, _PY_TYPES[self.kind])
               or (self.kind != "boolean" and isinstance(v, bool))]
        if bad:
            raise ValueError(f"variants {bad} are not of kind {self.kind}")
        if sum(s.percent for s in self.rollout) > 100:
            raise ValueError("rollout percentages add up to more than 100")
        return self

    @property
    def killed_variant(self) -> str:
        """Served while the kill switch is off: `off_variant`, else a boolean flag's false variant, else the
        default."""
        if self.off_variant:
            return self.off_variant
        if self.kind == "boolean":
            return next((n for n, v in self.variants.items() if v is False), self.default)
        return self.default


def bucket(flag_key: str, targeting_key: str) -> float:
    """A stable position in [0, 100) for this flag and targeting key."""
    digest = hashlib.sha256(f"{flag_key}\x00{targeting_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 / 100


def evaluate(key: str, flag: FlagDefinition, context: EvaluationContext | None) -> tuple[str, Reason]:
    """(variant, reason) of one flag for one context."""
    if not flag.enabled:
        return flag.killed_variant, Reason.DISABLED
    attrs = dict(context.attributes) if context else {}
    for rule in flag.rules:
        value = attrs.get(rule.attribute)
        if value is not None and str(value) in rule.values:
            return rule.variant, Reason.TARGETING_MATCH
    if flag.rollout and context is not None and context.targeting_key:
        pos, edge = bucket(key, context.targeting_key), 0.0
        for split in flag.rollout:
            edge += split.percent
            if pos < edge:
                return split.variant, Reason.SPLIT
    return flag.default, Reason.STATIC if not flag.rules and not flag.rollout else Reason.DEFAULT


class RedisFlagProvider(AbstractProvider):
    """OpenFeature provider over `ff:flags`; evaluation is in memory (see the module doc)."""

    def __init__(self, store: CacheStore | None, *, refresh_s: float = 30.0) -> None:
        self.store = store
        self.flags_store = FlagStore(store) if store is not None else None
        self.refresh_s = refresh_s
        self.flags: dict[str, FlagDefinition] = {}
        self.loaded = False
        self._warned: set[str] = set()
        self._task: asyncio.Task | None = None
        self._subscriber: InvalidationSubscriber | None = None
        self._changed = asyncio.Event()

    def get_metadata(self) -> Metadata:
        return Metadata(name="kredete-redis")

    # --- snapshot -----------------------------------------------------------------------------------------
    async def refresh(self) -> bool:
        """Reload every definition; False (and the last snapshot kept) when Redis cannot answer."""
        if self.flags_store is None:
            return False
        try:
            raw = await self.flags_store.all()
        except StoreError as exc:
            log.warning("feature flags not refreshed (%s); keeping the last %d definitions", type(exc).__name__,
                        len(self.flags))
            return False
        parsed: dict[str, FlagDefinition] = {}
        for key, body in raw.items():
            try:
                parsed[key] = FlagDefinition.model_validate(body)
            except ValidationError as exc:
                log.error("feature flag %r has an invalid definition (%d errors): callers get their default",
                          key, exc.error_count())
        self.flags = parsed
        self.loaded = True
        return True

    async def start(self) -> RedisFlagProvider:
        await self.refresh()
        if self.store is not None:
            self._subscriber = InvalidationSubscriber(
                self.store, on_keys=lambda keys: self._changed.set() if FLAGS_KEY in keys else None,
                on_reset=self._changed.set)
            await self._subscriber.start(wait_s=2)
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._follow(), name="feature-flags")
        return self

    async def _follow(self) -> None:
        while True:
            # Woken by a change (the subscriber runs on this loop) or the refresh period; not a short sleep loop,
            # which woke the server's event loop 20 times a second for nothing. Cancels promptly from any caller.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.refresh_s):
                    await self._changed.wait()
            self._changed.clear()
            await self.refresh()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=5)
            self._task = None
        if self._subscriber is not None:
            await self._subscriber.stop()
            self._subscriber = None

    def shutdown(self) -> None:
        """Called by the OpenFeature SDK, possibly from its own thread: hand the cancellation to our loop."""
        loop, task = getattr(self, "_loop", None), self._task
        if loop is not None and task is not None and not loop.is_closed():
            loop.call_soon_threadsafe(task.cancel)

    # --- OpenFeature resolution ---------------------------------------------------------------------------
    def _resolve(self, kind: Kind, key: str, default: Any, context: EvaluationContext | None) -> FlagResolutionDetails:
        flag = self.flags.get(key)
        if flag is None:
            if key not in self._warned:
                self._warned.add(key)
                log.warning("unknown feature flag %r: serving the caller's default", key)
            raise FlagNotFoundError(f"flag {key!r} is not defined")
        if flag.kind != kind and not (kind == "float" and flag.kind == "integer"):
            raise TypeMismatchError(f"flag {key!r} is {flag.kind}, asked as {kind}")
        variant, reason = evaluate(key, flag, context)
        value = flag.variants.get(variant)
        if value is None:
            raise ParseError(f"flag {key!r} has no variant {variant!r}")
        return FlagResolutionDetails(value=value, variant=variant, reason=reason)

    def resolve_boolean_details(self, flag_key: str, default_value: bool,
                                evaluation_context: EvaluationContext | None = None) -> FlagResolutionDetails[bool]:
        return self._resolve("boolean", flag_key, default_value, evaluation_context)

    def resolve_string_details(self, flag_key: str, default_value: str,
                               evaluation_context: EvaluationContext | None = None) -> FlagResolutionDetails[str]:
        return self._resolve("string", flag_key, default_value, evaluation_context)

    def resolve_integer_details(self, flag_key: str, default_value: int,
                                evaluation_context: EvaluationContext | None = None) -> FlagResolutionDetails[int]:
        return self._resolve("integer", flag_key, default_value, evaluation_context)

    def resolve_float_details(self, flag_key: str, default_value: float,
                              evaluation_context: EvaluationContext | None = None) -> FlagResolutionDetails[float]:
        return self._resolve("float", flag_key, default_value, evaluation_context)

    def resolve_object_details(self, flag_key: str, default_value: Any,
                               evaluation_context: EvaluationContext | None = None) -> FlagResolutionDetails[Any]:
        return self._resolve("object", flag_key, default_value, evaluation_context)


#: Flags the code reads: (kind, the default each caller passes, the variants `kredete flags set` starts from,
#: what it controls). The default is what runs while the flag is unset, unknown or unreadable.
KNOWN_FLAGS: dict[str, tuple[Kind, Any, dict[str, Any], str]] = {
    "search_knowledge.default_mode": ("string", "hybrid", {"hybrid": "hybrid", "knn": "knn", "bm25": "bm25"},
                                      "retrieval mode of search_knowledge when the caller names none"),
    "tools.get_fx_quote.enabled": ("boolean", True, {"on": True, "off": False},
                                   "whether the get_fx_quote tool answers (kill switch)"),
    "leaderboards.enabled": ("boolean", False, {"on": True, "off": False},
                             "credit-builder leaderboards are shown to customers"),
}


def template(key: str) -> dict[str, Any]:
    """A starting definition for a known flag: its variants, the code's default as default variant."""
    kind, default, variants, description = KNOWN_FLAGS[key]
    name = next(n for n, v in variants.items() if v == default)
    return {"kind": kind, "variants": variants, "default": name, "description": description}


def context_for(targeting_key: str | None, **attributes: Any) -> EvaluationContext:
    """An evaluation context: the targeting key (user id or staff subject) and attributes such as role and
    corridor (None values left out)."""
    return EvaluationContext(targeting_key=targeting_key,
                             attributes={k: v for k, v in attributes.items() if v is not None})


async def install_provider(store: CacheStore | None, *, domain: str = "kredete") -> RedisFlagProvider:
    """Start a provider and register it with the OpenFeature API for `domain`; returns it (stop() at the end)."""
    provider = await RedisFlagProvider(store).start()
    api.set_provider(provider, domain)
    return provider


def flag_client(domain: str = "kredete"):
    return api.get_client(domain)
