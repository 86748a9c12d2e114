"""`kredete cache follow|status`: the cache invalidation publisher and leaderboard updater as a process."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer

from kredete.commands.common import err, fail

cache_app = typer.Typer(no_args_is_help=True, help="Redis cache: run the invalidation publisher, show cache state.")


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, name="cache")


@cache_app.command("follow")
def follow(leaderboards: Annotated[bool, typer.Option(help="also keep the leaderboards current")] = True) -> None:
    """Publish invalidations for every change event (Postgres `change_events`, the credit store's outbox) until
    interrupted; checkpointed, so a restart resumes where it stopped."""
    from services.caching import read_through
    from services.invalidation import InvalidationPublisher
    from services.leaderboard import LeaderboardService
    from stores.errors import StoreError
    from stores.registry import connect

    async def run() -> None:
        stores = await connect(("postgres", "mongo", "cache"))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        front = read_through(stores.cache, stores.settings)
        publisher = await InvalidationPublisher(
            front, postgres=stores.postgres, mongo_db=stores.mongo.db,
            on_published=lambda event, keys, _at: err.print(f"{event}: evicted {len(keys)} key(s)")).start()
        tasks = []
        if leaderboards:
            boards = LeaderboardService(stores.postgres, stores.mongo.db, stores.cache,
                                        handle_key=stores.settings.token_signing_key.get_secret_value().encode(),
                                        min_cell_size=stores.settings.aggregate_min_cell_size)
            tasks.append(asyncio.create_task(boards.follow(stop)))
        err.print("[green]following change events[/] (Ctrl-C to stop)")
        try:
            await stop.wait()
        finally:
            await publisher.stop()
            if tasks:
                await asyncio.wait(tasks, timeout=5)
            await stores.close()

    try:
        asyncio.run(run())
    except StoreError as exc:
        fail(str(exc))


@cache_app.command("status")
def status() -> None:
    """Topology, persistence and the publisher's checkpoints."""
    import json

    from stores.errors import StoreError
    from stores.postgres.outbox import ChangeEventRepository
    from stores.registry import connect

    async def run() -> dict:
        stores = await connect(("postgres", "cache"))
        try:
            events = ChangeEventRepository(stores.postgres)
            return {"redis": {"url": stores.cache.url, "cluster": stores.cache.cluster,
                              **(await stores.cache.health())},
                    "change_events": {"last_seq": await events.last_seq(),
                                      "publisher_checkpoint": await events.checkpoint("cache-invalidation")}}
        finally:
            await stores.close()

    try:
        typer.echo(json.dumps(asyncio.run(run()), indent=2))
    except StoreError as exc:
        fail(str(exc))
