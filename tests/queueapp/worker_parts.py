"""One worker's real parts in the test's own process (its PgStore, its ARQ Redis pool, one
HQWorker for the default queue), for tests that drive a race step by step."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from arq.connections import RedisSettings, create_pool
from django.conf import settings

from queueapp import store as stores
from queueapp.worker import HQWorker, Runtime


@contextmanager
def one_worker(concurrency: int) -> Iterator[tuple[asyncio.AbstractEventLoop, stores.Store, Runtime, HQWorker]]:
    """(loop, store, runtime, worker), opened; at the end the worker's tasks a failed assertion left
    are cancelled and its pools closed."""
    loop = asyncio.new_event_loop()
    st = stores.for_database()
    loop.run_until_complete(st.open())
    runtime = Runtime(st, ["default"], concurrency=concurrency)

    async def make() -> HQWorker:
        pool = await create_pool(RedisSettings.from_dsn(settings.REDIS_URL))
        return HQWorker(runtime, "default", redis_pool=pool)

    w = loop.run_until_complete(make())
    runtime.workers = [w]
    runtime.redis = w.pool
    try:
        yield loop, st, runtime, w
    finally:
        runtime.stopping.set()
        left = {t for t in asyncio.all_tasks(loop) if t.get_coro().__qualname__.startswith("HQWorker.")}
        for task in left:
            task.cancel()
        if left:
            loop.run_until_complete(asyncio.wait(left))
        if w._pool is not None:
            loop.run_until_complete(w.pool.close(close_connection_pool=True))
        loop.run_until_complete(st.close())
        loop.close()
