"""Drain speed with concurrency limits (issue 18): a plain drain of no-op jobs against a drain of the
same jobs spread over 50 concurrency keys limited to 2 running each, interleaved, in rounds.

Both go through `run.hq_drain` (one `runworker --burst` process, concurrency 100, one workspace
allowed every slot), which checks that every job succeeded and none started twice. The keyed side
submits each job with `concurrency_key` `k:<i mod 50>` under a `KeyLimit` `k:*` of 2.

    .venv/bin/python bench/limits_bench.py --jobs 5000 --rounds 3

Then enqueue->start of unlimited jobs beside limited ones (`run.hq_latency`, the plain case's
measure: POSTs of `hq.noop` at 50/s for 10 s to a running worker, latency = first_started_at -
created_at): once alone, once with a backlog of 1,000 `hq.sleep` jobs (1 s each) over 50 keys
limited to 1 running each, so that 50 run and the rest wait held; interleaved, in rounds. The
issue's goal: p50 <= 5 ms beside the backlog. `--only drain` or `--only latency` runs one part.

`HQ_BENCH_DB` names the database (dropped and made again); `HQ_BENCH_REDIS_URL` overrides the
bench's Redis (db 15 of the local server), for a machine where others use that one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run

KEYS = 50
LIMIT = 2
#: The latency backlog: BACKLOG_PER_KEY jobs of BACKLOG_SLEEP_S on each of KEYS keys limited to 1.
BACKLOG_PER_KEY = 20
BACKLOG_SLEEP_S = 1.0


def keyed_submit(n: int, priorities: bool = False) -> float:
    """`run.hq_submit` with each job keyed `k:<i mod 50>` (priorities: none, the plain drain's)."""
    from queueapp.services import Submission, job_submit

    ws, user = run.bench_principal()
    t0 = time.perf_counter()
    for i in range(n):
        submission = Submission(function="hq.noop", args={}, concurrency_key=f"k:{i % KEYS}")
        job_submit(workspace=ws, owner=user, submission=submission)
    return time.perf_counter() - t0


def drain(procs: run.Procs, n: int, keyed: bool) -> dict:
    plain_submit = run.hq_submit
    run.hq_submit = keyed_submit if keyed else plain_submit
    try:
        return run.hq_drain(procs, n, extra_env={"HQ_WORKSPACE_SHARE": "1"}, name="keyed" if keyed else "plain")
    finally:
        run.hq_submit = plain_submit


def backlog() -> None:
    """Keyed `hq.sleep` jobs over KEYS keys `lat:<i>`, each limited to 1 running (`KeyLimit` `lat:*`)."""
    from django.db import connection

    from queueapp.services import Submission, job_submit

    with connection.cursor() as cur:
        cur.execute("DELETE FROM queueapp_limitgate")  # the job tables were emptied: no gate counts
    ws, user = run.bench_principal()
    for i in range(BACKLOG_PER_KEY * KEYS):
        args = {"seconds": BACKLOG_SLEEP_S}
        job_submit(
            workspace=ws,
            owner=user,
            submission=Submission(function="hq.sleep", args=args, concurrency_key=f"lat:{i % KEYS}"),
        )


def waiting_keyed() -> tuple[int, int]:
    """Keyed jobs still waiting, and how many of them held by their limit."""
    row = run.sql_one(
        "SELECT count(*), count(held_at) FROM queueapp_job WHERE concurrency_key IS NOT NULL"
        " AND state IN ('queued', 'deferred')"
    )
    return int(row[0]), int(row[1])


def latency(procs: run.Procs, token: str, rounds: int, rate: float, seconds: float) -> None:
    """Enqueue->start of unlimited jobs, alone and beside the backlog, interleaved (module docstring)."""
    web, port = run.start_web(procs)
    env = {"HQ_WORKSPACE_SHARE": "1"}  # one workspace: the backlog's 50 slots must not cap the others'
    plain, beside, waiting = [], [], []
    try:
        for r in range(1, rounds + 1):
            p = run.hq_latency(procs, port, token, rate, seconds, worker_env=env)
            b = run.hq_latency(procs, port, token, rate, seconds, backlog=backlog, settle_s=3.0, worker_env=env)
            waiting.append(waiting_keyed())
            plain.append(p)
            beside.append(b)
            run.log(
                f"latency round {r}: alone p50 {p['p50']:.1f} ms p99 {p['p99']:.1f} ms; beside the backlog"
                f" p50 {b['p50']:.1f} ms p99 {b['p99']:.1f} ms (keyed waiting at the end {waiting[-1]})"
            )
    finally:
        procs.stop(web)
    med = statistics.median
    print(
        f"enqueue->start of unlimited jobs at {rate:.0f}/s beside {BACKLOG_PER_KEY * KEYS} jobs over {KEYS} keys"
        f" limited to 1 (at the end {med(w[0] for w in waiting):.0f} waiting, {med(w[1] for w in waiting):.0f}"
        f" held): p50 {med(b['p50'] for b in beside):.1f} ms, p99 {med(b['p99'] for b in beside):.1f} ms;"
        f" alone p50 {med(p['p50'] for p in plain):.1f} ms, p99 {med(p['p99'] for p in plain):.1f} ms"
        f" (medians of {rounds} interleaved rounds of {int(rate * seconds)} jobs)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-rounds", type=int, default=2)
    parser.add_argument("--rate", type=float, default=50.0, help="unlimited POSTs per second (latency)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of POSTs per latency round")
    parser.add_argument("--only", choices=("drain", "latency"), help="run one part only")
    args = parser.parse_args()
    if os.environ.get("HQ_BENCH_REDIS_URL"):
        run.REDIS_URL = run.HQ_ENV["REDIS_URL"] = os.environ["HQ_BENCH_REDIS_URL"]
    token = run.setup_database()
    run.configure_django()
    from queueapp import limits
    from queueapp.models import KeyLimit

    limits.key_limit_save(KeyLimit(pattern="k:*", concurrency=LIMIT))
    limits.key_limit_save(KeyLimit(pattern="lat:*", concurrency=1))
    procs = run.Procs(Path(os.environ.get("TMPDIR", "/tmp")))
    if args.only != "drain":
        latency(procs, token, args.latency_rounds, args.rate, args.seconds)
    if args.only == "latency":
        return 0
    rows = []
    for r in range(1, args.rounds + 1):
        plain, keyed = drain(procs, args.jobs, keyed=False), drain(procs, args.jobs, keyed=True)
        for side in (plain, keyed):
            if not all(side["checks"].values()):
                raise RuntimeError(f"round {r}: a check failed: {side['checks']}")
        rows.append((plain, keyed))
        cpu = {k: (round(plain["cpu"][k], 2), round(keyed["cpu"][k], 2)) for k in ("worker", "pg")}
        ratio = keyed["rate"] / plain["rate"]
        run.log(f"round {r}: plain {plain['rate']:.0f}/s, keyed {keyed['rate']:.0f}/s ({ratio:.2f}x); CPU s {cpu}")
    ratios = [k["rate"] / p["rate"] for p, k in rows]
    plain_median = statistics.median(p["rate"] for p, _ in rows)
    keyed_median = statistics.median(k["rate"] for _, k in rows)
    print(
        f"{args.jobs} jobs, {KEYS} keys limited to {LIMIT}: plain median {plain_median:.0f}/s, keyed median"
        f" {keyed_median:.0f}/s; keyed/plain per round {', '.join(f'{x:.2f}' for x in ratios)}"
        f" (median {statistics.median(ratios):.2f}x)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
