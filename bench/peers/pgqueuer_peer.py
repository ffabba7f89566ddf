"""pgqueuer for the drain bench (run by bench/run.py with .run/bench-peers/bin/python).

No Django, no HQ code. Its own database (created and dropped by bench/run.py).

    install:  pgqueuer's schema (`Queries.install()`, what `pgq install` runs).
    enqueue:  empty pgqueuer's tables, then N `noop` jobs in one `Queries.enqueue` call (lists).
    drain:    one worker as `pgq run FACTORY --mode drain [--batch-size B]` runs it: pgqueuer's own
              supervisor `pgqueuer.run` on its own event loop (`asyncio_run`: uvloop when installed,
              as here), an asyncpg connection, a QueueManager with one `noop` entrypoint; without
              --batch-size, pgqueuer's defaults (batch_size 10, no concurrency cap). Writes the
              timings (common.Drain) and the database's counts to --out.

Finish = committed: pgqueuer records a finished job by moving it to pgqueuer_log in batches
(`JobStatusLogBuffer`: flushed at batch_size entries, every ~0.1 s, and on exit), each batch one
autocommit statement (`Queries.log_jobs`). The driver wraps that method and stamps the time after
the statement returned, so the last finish is when the last job's success was committed.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from common import Drain, cli, noop_body
from pgqueuer import Queries, QueueManager, run
from pgqueuer.adapters.cli.cli import asyncio_run
from pgqueuer.db import AsyncpgDriver
from pgqueuer.domain.types import QueueExecutionMode


def tables(q: Queries) -> list[str]:
    s = q.qbe.settings
    return [s.queue_table, s.queue_table_log, s.statistics_table]


async def install(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    await Queries(AsyncpgDriver(conn)).install()
    await conn.close()


async def enqueue(dsn: str, n: int) -> dict:
    conn = await asyncpg.connect(dsn)
    q = Queries(AsyncpgDriver(conn))
    await conn.execute(f"TRUNCATE {', '.join(tables(q))}")
    t0 = time.perf_counter()
    ids = await q.enqueue(["noop"] * n, [None] * n, [0] * n)
    took = time.perf_counter() - t0
    await conn.close()
    if len(ids) != n:
        raise SystemExit(f"enqueued {len(ids)} of {n}")
    return {"enqueue_s": took}


async def counts(dsn: str) -> dict:
    conn = await asyncpg.connect(dsn)
    q = Queries(AsyncpgDriver(conn))
    s = q.qbe.settings
    left = await conn.fetchval(f"SELECT count(*) FROM {s.queue_table}")
    rows = await conn.fetch(f"SELECT status::text, count(*) FROM {s.queue_table_log} GROUP BY 1")
    await conn.close()
    log = {r[0]: r[1] for r in rows}
    return {"succeeded": log.get("successful", 0), "unfinished": left, "detail": {"queue table": left, "log": log}}


def drain(dsn: str, n: int, batch_size: int | None) -> Drain:
    st = Drain(n=n)

    @asynccontextmanager
    async def factory() -> AsyncIterator[QueueManager]:
        conn = await asyncpg.connect(dsn)
        q = Queries(AsyncpgDriver(conn))
        log_jobs = q.log_jobs

        async def committed_log_jobs(job_status: list) -> None:
            await log_jobs(job_status)
            st.committed(sum(1 for _, status, _ in job_status if status == "successful"))

        q.log_jobs = committed_log_jobs  # type: ignore[method-assign]
        qm = QueueManager(q)

        @qm.entrypoint("noop")
        async def noop(job: object) -> None:
            noop_body(st)

        st.t_ready = time.time()
        try:
            yield qm
        finally:
            await conn.close()

    options: dict = {"mode": QueueExecutionMode.drain}
    if batch_size is not None:
        options["batch_size"] = batch_size
    asyncio_run(run(factory, **options))
    st.t_exit = time.time()
    st.db = asyncio.run(counts(dsn))
    return st


def main() -> int:
    return cli(install, enqueue, drain, ("--batch-size", "default: pgqueuer's own (10)"))


if __name__ == "__main__":
    sys.exit(main())
