"""Feature flags through the OpenFeature SDK with the Redis provider."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from openfeature import api
from openfeature.flag_evaluation import Reason

from services.flags import FlagDefinition, RedisFlagProvider, context_for
from stores.cache.flags import FlagStore


@pytest.fixture
async def flags(cache):
    store = FlagStore(cache)
    provider = await RedisFlagProvider(cache, refresh_s=60).start()
    domain = f"test-{uuid.uuid4().hex[:8]}"
    api.set_provider(provider, domain)
    made: list[str] = []

    async def put(key: str, definition: dict) -> None:
        made.append(key)
        await store.put(key, definition)
        for _ in range(200):  # the change message makes the provider reload
            await asyncio.sleep(0.01)
            if provider.flags.get(key) == FlagDefinition.model_validate(definition):
                return
        raise AssertionError("provider did not pick up the change")

    yield api.get_client(domain), put, provider
    for key in made:
        await store.delete(key)
    await provider.stop()


def _key() -> str:
    return f"test.{uuid.uuid4().hex[:10]}"


async def test_boolean_flag_with_kill_switch(flags):
    client, put, _ = flags
    key = _key()
    on = {"kind": "boolean", "variants": {"on": True, "off": False}, "default": "on"}
    await put(key, on)
    assert client.get_boolean_value(key, False, context_for("u1")) is True
    await put(key, {**on, "enabled": False})  # killed: a boolean serves its false variant
    details = client.get_boolean_details(key, True, context_for("u1"))
    assert details.value is False and details.reason == Reason.DISABLED


async def test_variant_flag_targets_corridor_and_role(flags):
    client, put, _ = flags
    key = _key()
    await put(key, {"kind": "string", "variants": {"hybrid": "hybrid", "knn": "knn", "bm25": "bm25"},
                    "default": "hybrid", "rules": [{"attribute": "corridor", "in": ["US-NG"], "variant": "knn"},
                                                   {"attribute": "role", "in": ["support_agent"], "variant": "bm25"}]})
    assert client.get_string_value(key, "x", context_for("u", corridor="US-NG")) == "knn"
    assert client.get_string_value(key, "x", context_for("u", role="support_agent")) == "bm25"
    d = client.get_string_details(key, "x", context_for("u", corridor="GB-GH", role="customer"))
    assert d.value == "hybrid" and d.reason == Reason.DEFAULT


async def test_percentage_rollout_is_sticky_per_user_and_grows_monotonically(flags):
    client, put, _ = flags
    key = _key()
    base = {"kind": "boolean", "variants": {"on": True, "off": False}, "default": "off"}
    users = [str(uuid.uuid4()) for _ in range(2000)]
    await put(key, {**base, "rollout": [{"variant": "on", "percent": 20}]})
    first = {u for u in users if client.get_boolean_value(key, False, context_for(u))}
    again = {u for u in users if client.get_boolean_value(key, False, context_for(u))}
    assert first == again  # sticky
    assert 300 <= len(first) <= 500  # ~20 %
    await put(key, {**base, "rollout": [{"variant": "on", "percent": 50}]})
    wider = {u for u in users if client.get_boolean_value(key, False, context_for(u))}
    assert first <= wider and 850 <= len(wider) <= 1150


async def test_unknown_flag_gives_the_default_and_is_logged(flags, caplog):
    client, _, _ = flags
    with caplog.at_level("WARNING", logger="kredete.flags"):
        d = client.get_string_details("no.such.flag", "fallback", context_for("u"))
    assert d.value == "fallback" and d.reason == Reason.ERROR
    assert any("unknown feature flag 'no.such.flag'" in r.getMessage() for r in caplog.records)


async def test_invalid_definitions_are_refused_by_the_cli_model():
    from pydantic import ValidationError

    from services.flags import FlagDefinition

    with pytest.raises(ValidationError):
        FlagDefinition.model_validate({"kind": "boolean", "variants": {"on": "yes"}, "default": "on"})
    with pytest.raises(ValidationError):
        FlagDefinition.model_validate({"kind": "boolean", "variants": {"on": True}, "default": "off"})
    with pytest.raises(ValidationError):
        FlagDefinition.model_validate({"kind": "boolean", "variants": {"on": True, "off": False}, "default": "off",
                                       "rollout": [{"variant": "on", "percent": 70}, {"variant": "off",
                                                                                       "percent": 40}]})
