#!/usr/bin/env python
"""Time the admin's jobs list over a million jobs (`.venv/bin/python bench/admin_bench.py`).

The data set is `bench/summary_bench.py`'s (one builder: its `setup_database`, 1,000,000 jobs over
30 days in 10 workspaces, one holding 40 %); `make bench` runs these timings from that script on
the database it has just filled, and this script alone builds the same set in its own database.

Measured, in the server process (Django's test client: the view, its SQL and the template, no
network): GET /admin/queueapp/job/ as a superuser and as a staff admin of the big workspace, with
no filter, a state filter, the dashboard's waiting link (state__in), a priority band, a search by
id prefix, a key=value search, the second page, and one job's page. For each: median and p95 over
`--runs` requests after a warm-up, the SQL queries of one render, and whether any of them counts
rows without a bound (a COUNT with neither a LIMIT nor a window of live or recently finished
jobs). Target: every median and p95 under 300 ms; a page of 50 rows (with more after it) needs at
most one query more than a page of 1 row, the capped count (no query per row).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import summary_bench  # noqa: E402  (the path above first)

DB = "hq_bench_admin"
TARGET_MS = 300.0
LIST = "/admin/queueapp/job/"
#: A COUNT is bounded when it counts at most CAP + 1 rows (a LIMIT) or only a window the indexes
#: keep small: jobs waiting or running (`job_live`), or finished since a given time (`job_finished_at`).
BOUNDED = re.compile(r'LIMIT|"state" IN \(|"finished_at" >= ', re.IGNORECASE)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def cases(job_id: str) -> list[tuple[str, str]]:
    """(label, URL) of every page measured."""
    return [
        ("list", LIST),
        ("state=succeeded", LIST + "?state__exact=succeeded"),
        ("state__in=queued,deferred", LIST + "?state__in=queued,deferred"),
        ("priority above 0", LIST + "?priority_band=high"),
        ("search id prefix", LIST + "?q=" + job_id[:6]),
        ("search key=value", LIST + "?q=account%3D7"),
        ("page 2", LIST + "?p=2"),
        ("job page", f"{LIST}{job_id}/change/"),
    ]


class Recorder:
    """Every SQL statement run while it is installed (`connection.execute_wrapper`), with its time;
    the test client's request_started signal clears `connection.queries`, so that cannot count them."""

    def __init__(self) -> None:
        self.queries: list[tuple[str, float]] = []

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.queries.append((sql, (time.perf_counter() - started) * 1000))


def measure(client: Any, url: str, runs: int) -> tuple[list[float], list[str]]:
    """Timings of `runs` GETs after a warm-up, and the SQL of one render."""
    from django.db import connection

    recorder = Recorder()
    with connection.execute_wrapper(recorder):
        response = client.get(url)
    if os.environ.get("HQ_BENCH_SQL"):
        for sql, ms in recorder.queries:
            print(f"      {ms:7.1f} ms  {sql[:400]}")
    assert response.status_code == 200, (url, response.status_code)
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(url)
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    return timings, [sql for sql, _ in recorder.queries]


def unbounded_counts(queries: list[str]) -> list[str]:
    return [sql for sql in queries if "COUNT(" in sql.upper() and not BOUNDED.search(sql)]


def time_admin_pages(workspace_ids: list[str], runs: int) -> tuple[float, list[str]]:
    """Print one line per page and user; return the worst p95 (ms) and what broke the rules."""
    from django.db import connection
    from django.test import Client

    from hq import services as hq_services
    from hq.models import Membership, User, Workspace
    from queueapp.models import Job

    big = Workspace.objects.get(pk=workspace_ids[0])
    with connection.cursor() as cur:
        # A few jobs of the big workspace with arguments to find and a priority, as a live table has.
        cur.execute(
            "UPDATE queueapp_job SET args = jsonb_build_object('account', 7), priority = 5 WHERE id IN ("
            " SELECT id FROM queueapp_job WHERE workspace_id = %s ORDER BY created_at DESC LIMIT 200)",
            [big.pk],
        )
    job_id = str(Job.objects.filter(workspace=big).order_by("-created_at").values_list("pk", flat=True)[10])
    root, _ = User.objects.get_or_create(
        email="bench-admin-root@example.com", defaults={"is_staff": True, "is_superuser": True}
    )
    ops, _ = User.objects.get_or_create(email="bench-admin-ops@example.com", defaults={"is_staff": True})
    hq_services.membership_set(user=ops, workspace=big, role=Membership.Role.ADMIN)
    worst = 0.0
    problems: list[str] = []
    one_row_queries: dict[str, int] = {}
    for who, user in (("superuser", root), ("staff, one workspace", ops)):
        client = Client(HTTP_HOST="localhost")
        client.force_login(user)
        _, one = measure(client, LIST + "?q=" + job_id, 1)  # a page of one row: the queries a render needs
        one_row_queries[who] = len(one)
        for label, url in cases(job_id):
            timings, queries = measure(client, url, runs)
            median, high = statistics.median(timings), p95(timings)
            worst = max(worst, high)
            loose = unbounded_counts(queries)
            print(
                f"  admin jobs list, {label}, {who}: median {median:.0f} ms, p95 {high:.0f} ms over {runs}; "
                f"{len(queries)} queries, {'no unbounded COUNT' if not loose else f'{len(loose)} UNBOUNDED COUNT'}",
                flush=True,
            )
            for sql in loose:
                print(f"    unbounded: {sql[:300]}")
                problems.append(f"unbounded COUNT on {label}, {who}")
            # A page of 50 with more after it adds the capped count to a page of 1 row's; nothing per row.
            if label != "job page" and len(queries) > one_row_queries[who] + 1:
                problems.append(f"{label}, {who}: {len(queries)} queries, a page of 1 row {one_row_queries[who]}")
        print(f"  admin jobs list, a page of 1 row, {who}: {one_row_queries[who]} queries (a full page: + the count)")
    return worst, problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000, help="Jobs to insert (default 1,000,000).")
    parser.add_argument("--runs", type=int, default=20, help="Timed requests per page (median and p95).")
    parser.add_argument("--keep", action="store_true", help="Keep the database afterwards.")
    parser.add_argument("--reuse", action="store_true", help="Use the database as it is (filled by a --keep run).")
    parser.add_argument(
        "--database", default=DB, help=f"Database to drop, create and fill (default {DB}); never DATABASE_URL's."
    )
    args = parser.parse_args()
    db = args.database
    if not db.replace("_", "").isalnum():
        parser.error("--database takes letters, digits and underscores only")
    if not args.reuse:
        summary_bench.admin_sql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        summary_bench.admin_sql(f"CREATE DATABASE {db}")
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{db}"
    os.environ.setdefault("DEBUG", "1")
    os.environ["DJANGO_SETTINGS_MODULE"] = "hq.settings"
    import django

    django.setup()
    try:
        if args.reuse:
            from hq.models import Workspace

            ids = [
                str(pk)
                for pk in Workspace.objects.filter(slug__startswith="bench-")
                .order_by("slug")
                .values_list("pk", flat=True)
            ]
        else:
            print(f"Setting up {db} with {args.jobs:,} jobs...", flush=True)
            ids = summary_bench.setup_database(args.jobs)
        report(ids, args.runs)
        return 0
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep and not args.reuse:
            summary_bench.admin_sql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def report(workspace_ids: list[str], runs: int) -> None:
    worst, problems = time_admin_pages(workspace_ids, runs)
    verdict = "OK" if worst < TARGET_MS and not problems else "OVER"
    print(f"Admin result: worst p95 {worst:.0f} ms; target < {TARGET_MS:.0f} ms: {verdict}")
    for problem in problems:
        print(f"  {problem}")
    print("Command: .venv/bin/python bench/admin_bench.py (make bench runs it from bench/summary_bench.py)")


if __name__ == "__main__":
    sys.exit(main())
