"""procrastinate for the drain bench (run by bench/run.py with .run/bench-peers/bin/python).

No Django, no HQ code. Its own database (created and dropped by bench/run.py).

    install:  procrastinate's schema (`App.schema_manager.apply_schema_async()`, what
              `procrastinate schema --apply` runs).
    enqueue:  empty procrastinate's job, event and worker tables, then N `noop` jobs in one
              `Task.batch_defer_async` call.
    drain:    one worker, `App.run_worker_async(wait=False, concurrency=C)` (wait=False: stop once
              no job is left, like ARQ's burst), on the stdlib asyncio loop as the `procrastinate
              worker` command runs it, with procrastinate's default PsycopgConnector pool; C
              defaults to procrastinate's own default (1). Writes the timings (common.Drain) and
              the database's counts to --out.

Finish = committed: procrastinate records each finished job with one `procrastinate_finish_job`
call on a pooled connection, committed when the pool takes the connection back
(`JobManager.finish_job`). The driver wraps that method and stamps the time after it returned, so
the last finish is when the last job's status 'succeeded' was committed.
"""

from __future__ import annotations

import asyncio
import sys
import time

from common import Drain, cli, noop_body
from procrastinate import App, PsycopgConnector
from procrastinate.jobs import Status

TABLES = "procrastinate_jobs, procrastinate_events, procrastinate_periodic_defers, procrastinate_workers"


def make_app(dsn: str, st: Drain | None = None) -> App:
    app = App(connector=PsycopgConnector(conninfo=dsn))

    @app.task(name="noop")
    async def noop() -> None:
        if st is not None:
            noop_body(st)

    return app


async def install(dsn: str) -> None:
    app = make_app(dsn)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()


async def enqueue(dsn: str, n: int) -> dict:
    app = make_app(dsn)
    async with app.open_async():
        await app.connector.execute_query_async(f"TRUNCATE {TABLES} RESTART IDENTITY")  # type: ignore[arg-type]
        t0 = time.perf_counter()
        ids = await app.tasks["noop"].batch_defer_async(*({} for _ in range(n)))
        took = time.perf_counter() - t0
    if len(ids) != n:
        raise SystemExit(f"deferred {len(ids)} of {n}")
    return {"enqueue_s": took}


async def drain(dsn: str, n: int, concurrency: int | None) -> Drain:
    st = Drain(n=n)
    app = make_app(dsn, st)
    async with app.open_async():
        finish_job = app.job_manager.finish_job

        async def committed_finish_job(job: object, status: Status, delete_job: bool) -> None:
            await finish_job(job=job, status=status, delete_job=delete_job)  # type: ignore[arg-type]
            st.committed(1 if status == Status.SUCCEEDED else 0)

        app.job_manager.finish_job = committed_finish_job  # type: ignore[method-assign]
        options: dict = {"wait": False}
        if concurrency is not None:
            options["concurrency"] = concurrency
        st.t_ready = time.time()
        await app.run_worker_async(**options)
        st.t_exit = time.time()
        rows = await app.connector.execute_query_all_async(
            "SELECT status::text AS status, count(*) AS n FROM procrastinate_jobs GROUP BY 1"  # type: ignore[arg-type]
        )
    jobs = {r["status"]: r["n"] for r in rows}
    st.db = {"succeeded": jobs.get("succeeded", 0), "unfinished": sum(jobs.values()) - jobs.get("succeeded", 0)}
    st.db["detail"] = {"procrastinate_jobs": jobs}
    return st


def main() -> int:
    return cli(
        install,
        enqueue,
        lambda dsn, n, concurrency: asyncio.run(drain(dsn, n, concurrency)),
        ("--concurrency", "default: procrastinate's own (1)"),
    )


if __name__ == "__main__":
    sys.exit(main())
