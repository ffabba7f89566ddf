"""A plain `arq.Worker` for the bare-ARQ baselines (run as a subprocess by bench/run.py).

No Django, no HQ code: one no-op function and timing hooks.

    drain: burst=True, poll_delay 0.01; records the wall time of the first `on_job_start` and of
           the last `after_job_end` (after ARQ has recorded/deleted the result), writes JSON, exits.
    serve: not burst, ARQ's DEFAULT poll_delay (0.5 s); for every job writes one line
           `latency_ms` = on_job_start time - job.enqueue_time (ARQ's own enqueue timestamp, ms).
           Writes `<out>.ready` once started; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

T_PROC = time.time()

from arq.connections import RedisSettings  # noqa: E402
from arq.worker import Worker, func  # noqa: E402


async def noop(ctx: dict) -> None:
    return None


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["drain", "serve"])
    p.add_argument("--out", required=True)
    p.add_argument("--redis-db", type=int, default=15)
    p.add_argument("--max-jobs", type=int, default=100)
    p.add_argument("--poll-delay", type=float, default=None)
    a = p.parse_args()

    st = {"first_start": None, "last_end": None, "started": 0, "ended": 0}
    lat_file = open(a.out, "w", buffering=1) if a.mode == "serve" else None  # noqa: SIM115

    async def on_startup(ctx: dict) -> None:
        st["t_ready"] = time.time()
        if a.mode == "serve":
            with open(a.out + ".ready", "w") as f:
                f.write(str(os.getpid()))

    async def on_job_start(ctx: dict) -> None:
        now = time.time()
        if st["first_start"] is None:
            st["first_start"] = now
        st["started"] += 1
        if lat_file is not None:
            lat_file.write(f"{now * 1000 - ctx['enqueue_time'].timestamp() * 1000:.3f}\n")

    async def after_job_end(ctx: dict) -> None:
        st["last_end"] = time.time()
        st["ended"] += 1

    kwargs: dict = {}
    if a.mode == "drain":
        kwargs.update(burst=True, poll_delay=a.poll_delay if a.poll_delay is not None else 0.01)
    elif a.poll_delay is not None:
        kwargs.update(poll_delay=a.poll_delay)  # default: ARQ's own 0.5 s
    w = Worker(
        functions=[func(noop, name="noop")],
        redis_settings=RedisSettings(
            host="127.0.0.1", port=int(os.environ.get("HQ_BENCH_REDIS_PORT", "6379")), database=a.redis_db
        ),
        max_jobs=a.max_jobs,
        keep_result=0,
        on_startup=on_startup,
        on_job_start=on_job_start,
        after_job_end=after_job_end,
        **kwargs,
    )
    st["t_main"] = time.time()
    w.run()
    st["t_exit"] = time.time()
    st["t_proc"] = T_PROC
    st["complete"], st["failed"] = w.jobs_complete, w.jobs_failed
    if a.mode == "drain":
        with open(a.out, "w") as f:
            json.dump(st, f)
    else:
        lat_file.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
