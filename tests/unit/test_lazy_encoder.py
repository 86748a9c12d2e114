"""LazyEncoder: the model is built once, on a worker thread, at the first embedding; the loop keeps serving."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from retrieval.encoder import HashingEncoder, LazyEncoder


async def test_built_once_off_the_event_loop_while_other_work_goes_on():
    built: list[str] = []

    def slow_factory():
        built.append(threading.current_thread().name)
        time.sleep(0.3)  # a model load: blocking, seconds in real life
        return HashingEncoder(dim=384, name="hashing")

    enc = LazyEncoder(slow_factory, name="hashing", dim=384)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    beat = asyncio.create_task(ticker())
    a, b = await asyncio.gather(enc.embed_query("fees to Ghana"), enc.embed_query("fees to Ghana"))
    beat.cancel()
    assert len(built) == 1 and built[0] != threading.main_thread().name
    assert ticks >= 10, "the event loop was blocked while the model loaded"
    assert a.shape == (384,) and np.allclose(a, b)
    assert (await enc.embed_documents(["x", "y"])).shape == (2, 384) and len(built) == 1


async def test_an_encoder_other_than_declared_is_refused():
    enc = LazyEncoder(lambda: HashingEncoder(dim=128, name="hashing"), name="hashing", dim=384)
    with pytest.raises(ValueError, match="declared"):
        await enc.embed_query("x")
