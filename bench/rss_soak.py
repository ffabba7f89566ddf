#!/usr/bin/env python
"""Worker memory under a steady 1,000 jobs/s for 10 minutes (`make rss-soak`; not part of make test).

Its own PostgreSQL database `hq_rss` (dropped and created) and Redis db 13 with the prefix `hqrss:`.
One `manage.py runworker` (every side task, DEBUG=0, concurrency 100) runs throughout; this process
submits `hq.noop` jobs with `jobs_submit_many`, 100 per call, on an absolute schedule of `--rate`
jobs/s. Every 5 s it reads the worker's VmRSS from /proc. At the end it waits for the queue to drain
and prints: jobs accepted and succeeded, lost (accepted, not finished), started twice, the RSS after
the first minute (warm-up: imports, pools, caches), at the end and its maximum, and the slope of a
least-squares line through the samples after the warm-up (KiB per minute).

"Flat" means: the end is within 10 % of the warm-up value and the slope is under 1 % of it per
minute. Exit code 1 when a job was lost or started twice, or the RSS was not flat.

    .venv/bin/python bench/rss_soak.py --minutes 10 --rate 1000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.soak import reset_database, rss_kb  # noqa: E402  (the soak's own helpers, shared)

DB = "hq_rss"
ENV = {
    "DJANGO_SETTINGS_MODULE": "hq.settings",
    "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB}",
    "REDIS_URL": "redis://127.0.0.1:6379/13",
    "HQ_REDIS_PREFIX": "hqrss:",
    "DEBUG": "0",
    "SECRET_KEY": "rss-soak",
    "ALLOWED_HOSTS": "127.0.0.1",
    "HQ_DB_APPLICATION_NAME": "hq-rss-soak",
}
WARMUP_S = 60.0
SAMPLE_S = 5.0
PER_CALL = 100


def slope_per_min(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of (seconds, KiB), in KiB per minute."""
    n = len(samples)
    if n < 2:
        return 0.0
    mx = sum(t for t, _ in samples) / n
    my = sum(v for _, v in samples) / n
    var = sum((t - mx) ** 2 for t, _ in samples)
    return 60 * sum((t - mx) * (v - my) for t, v in samples) / var if var else 0.0


def reset() -> None:
    import redis

    reset_database(DB, ENV)
    redis.Redis.from_url(ENV["REDIS_URL"]).flushdb()
    subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "create_token", "--email", "rss@example.com", "--workspace", "rss"],
        env={**os.environ, **ENV},
        check=True,
        capture_output=True,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=1000.0, help="jobs per second (default 1000)")
    args = ap.parse_args()

    reset()
    os.environ.update(ENV)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.db import connection

    from hq.models import User, Workspace
    from queueapp.services import Submission, jobs_submit_many

    ws, user = Workspace.objects.get(slug="rss"), User.objects.get(email="rss@example.com")
    argv = [sys.executable, "manage.py", "runworker", "--concurrency", "100"]
    log = open(ROOT / ".run" / "rss-soak-worker.log", "w")
    worker = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **ENV}, stdout=log, stderr=subprocess.STDOUT)
    samples: list[tuple[float, int]] = []
    accepted = 0
    behind_max = 0.0
    try:
        time.sleep(3)
        t0 = time.monotonic()
        end = t0 + args.minutes * 60
        next_sample = t0
        calls = 0
        while time.monotonic() < end:
            due = t0 + calls * PER_CALL / args.rate
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            behind_max = max(behind_max, time.monotonic() - due)
            subs = [Submission(function="hq.noop", args={"i": accepted + i}) for i in range(PER_CALL)]
            jobs_submit_many(workspace=ws, owner=user, submissions=subs)
            accepted += PER_CALL
            calls += 1
            if time.monotonic() >= next_sample:
                samples.append((time.monotonic() - t0, rss_kb(worker.pid)))
                next_sample += SAMPLE_S
                if len(samples) % 12 == 0:
                    print(f"  {samples[-1][0]:5.0f} s: worker RSS {samples[-1][1] / 1024:.1f} MiB, {accepted} accepted")
        with connection.cursor() as cur:
            cur.execute("SELECT count(*) FROM queueapp_job WHERE finished_at IS NULL")
            (backlog,) = cur.fetchone()
        t_end = time.monotonic()
        deadline = t_end + 120
        while time.monotonic() < deadline:
            with connection.cursor() as cur:
                cur.execute("SELECT count(*) FROM queueapp_job WHERE finished_at IS NULL")
                if cur.fetchone()[0] == 0:
                    break
            time.sleep(0.5)
        drained_s = time.monotonic() - t_end
        samples.append((time.monotonic() - t0, rss_kb(worker.pid)))
    finally:
        worker.terminate()
        worker.wait(60)
        log.close()
    with connection.cursor() as cur:
        cur.execute("SELECT count(*), count(*) FILTER (WHERE state = 'succeeded') FROM queueapp_job")
        total, ok = cur.fetchone()
        cur.execute(
            "SELECT count(*) FROM (SELECT job_id FROM queueapp_jobevent WHERE kind = 'started'"
            " GROUP BY job_id HAVING count(*) > 1) d"
        )
        (twice,) = cur.fetchone()
    after = [(t, v) for t, v in samples if t >= WARMUP_S]
    warm = after[0][1] if after else samples[-1][1]
    last, peak = samples[-1][1], max(v for _, v in samples)
    slope = slope_per_min(after)
    flat = abs(last - warm) <= 0.10 * warm and abs(slope) <= 0.01 * warm
    lost = accepted - ok
    print(
        f"rss soak: {args.minutes:g} min at {args.rate:g} jobs/s; accepted {accepted}, recorded {total}, "
        f"succeeded {ok}, lost {lost}, started twice {twice}; submitter at most {behind_max:.2f} s behind schedule; "
        f"unfinished when the submits stopped {backlog} (drained {drained_s:.1f} s later)"
    )
    print(
        f"worker RSS: {warm / 1024:.1f} MiB after {WARMUP_S:.0f} s, {last / 1024:.1f} MiB at the end, "
        f"max {peak / 1024:.1f} MiB; slope after warm-up {slope:+.0f} KiB/min ({100 * slope / warm:+.2f} %/min); "
        f"{'FLAT' if flat else 'NOT FLAT'}"
    )
    return 0 if flat and lost == 0 and twice == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
