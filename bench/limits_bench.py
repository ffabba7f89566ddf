"""Drain speed with concurrency limits (issue 18): a plain drain of no-op jobs against a drain of the
same jobs spread over 50 concurrency keys limited to 2 running each, interleaved, in rounds.

Both go through `run.hq_drain` (one `runworker --burst` process, concurrency 100, one workspace
allowed every slot), which checks that every job succeeded and none started twice. The keyed side
submits each job with `concurrency_key` `k:<i mod 50>` under a `KeyLimit` `k:*` of 2.

    .venv/bin/python bench/limits_bench.py --jobs 5000 --rounds 3

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if os.environ.get("HQ_BENCH_REDIS_URL"):
        run.REDIS_URL = run.HQ_ENV["REDIS_URL"] = os.environ["HQ_BENCH_REDIS_URL"]
    run.setup_database()
    run.configure_django()
    from queueapp import limits
    from queueapp.models import KeyLimit

    limits.key_limit_save(KeyLimit(pattern="k:*", concurrency=LIMIT))
    procs = run.Procs(Path(os.environ.get("TMPDIR", "/tmp")))
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
