"""oban-py for the drain bench, optional (bench/run.py --oban; it needs Python 3.12: run with
.run/bench-oban/bin/python, built from bench/peers/requirements-oban.txt).

No Django, no HQ code. Its own database (created and dropped by bench/run.py).

    install:  oban's schema (`oban.schema.install`, what `oban install` runs).
    enqueue:  empty oban_jobs, then N `Noop` jobs in one `Oban.enqueue_many` call.
    drain:    one worker as `oban start --queues default:LIMIT` runs it: uvloop, orjson for JSON,
              `Oban.create_pool` with its defaults, `Oban(pool, queues={"default": LIMIT})`
              (LIMIT 100 unless --limit, as HQ and bare ARQ); oban has no burst mode, so the driver
              stops it once every job's completion was acknowledged. Writes the timings
              (common.Drain) and the database's counts to --out.

Finish = committed: oban acknowledges finished jobs in batches (`Query.ack_jobs`: the jobs that
completed since the producer's last pass, one UPDATE each in one transaction). The driver wraps
that method and stamps the time after it returned, so the last finish is when the last job's
state 'completed' was committed.
"""

from __future__ import annotations

import asyncio
import sys
import time

import orjson
import uvloop
from common import Drain, cli, noop_body
from oban import Oban, worker
from oban.schema import install as install_schema
from psycopg.types.json import set_json_dumps, set_json_loads

STATE: dict[str, Drain] = {}


@worker(queue="default")
class Noop:
    async def process(self, job: object) -> None:
        if "drain" in STATE:
            noop_body(STATE["drain"])


async def install(dsn: str) -> None:
    pool = await Oban.create_pool(dsn)
    await install_schema(pool)
    await pool.close()


async def enqueue(dsn: str, n: int) -> dict:
    pool = await Oban.create_pool(dsn)
    async with pool.connection() as conn:
        await conn.execute("TRUNCATE oban_jobs RESTART IDENTITY")
    t0 = time.perf_counter()
    jobs = await Oban(pool=pool).enqueue_many([Noop.new({}) for _ in range(n)])
    took = time.perf_counter() - t0
    await pool.close()
    if len(jobs) != n:
        raise SystemExit(f"enqueued {len(jobs)} of {n}")
    return {"enqueue_s": took}


async def drain(dsn: str, n: int, limit: int | None) -> Drain:
    st = STATE["drain"] = Drain(n=n)
    done = asyncio.Event()
    pool = await Oban.create_pool(dsn)
    oban = Oban(pool=pool, queues={"default": limit or 100})
    ack_jobs = oban._query.ack_jobs

    async def committed_ack_jobs(acks: list) -> list[int]:
        ids = await ack_jobs(acks)
        st.committed(sum(1 for a in acks if a.state == "completed"))
        if st.finished >= n:
            done.set()
        return ids

    oban._query.ack_jobs = committed_ack_jobs  # type: ignore[method-assign]
    st.t_ready = time.time()
    async with oban:
        await done.wait()
    st.t_exit = time.time()
    async with pool.connection() as conn:
        rows = await (await conn.execute("SELECT state::text, count(*) FROM oban_jobs GROUP BY 1")).fetchall()
    await pool.close()
    jobs = {r[0]: r[1] for r in rows}
    st.db = {"succeeded": jobs.get("completed", 0), "unfinished": sum(jobs.values()) - jobs.get("completed", 0)}
    st.db["detail"] = {"oban_jobs": jobs}
    return st


def main() -> int:
    set_json_dumps(orjson.dumps)  # as `oban start` does
    set_json_loads(orjson.loads)
    return cli(
        install,
        enqueue,
        lambda dsn, n, limit: uvloop.run(drain(dsn, n, limit)),
        ("--limit", "the queue's concurrency (default 100)"),
        run=uvloop.run,
    )


if __name__ == "__main__":
    sys.exit(main())
