"""Run the HQ worker: ARQ job loop, outbox relay, reaper and the other registered side tasks."""

from __future__ import annotations

import asyncio
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from queueapp import registry, store
from queueapp.worker import run_process


class Command(BaseCommand):
    help = "Run the worker: jobs from the given queues plus the side tasks (relay, reaper, scheduler, ...)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--queue", action="append", dest="queues", help="Queue to work (repeatable); default: HQ_QUEUES."
        )
        parser.add_argument("--burst", action="store_true", help="Push and run what is due, then exit.")
        parser.add_argument("--concurrency", type=int, default=None, help="Jobs run at once per queue.")
        parser.add_argument("--only", action="append", default=[], help="Run only these side tasks (repeatable).")
        parser.add_argument("--without", action="append", default=[], help="Skip these side tasks (repeatable).")
        parser.add_argument("--without-scheduler", action="store_true", help="Same as --without scheduler.")
        parser.add_argument("--scheduler-only", action="store_true", help="Run the scheduler side task and no jobs.")
        parser.add_argument("--no-jobs", action="store_true", help="Run side tasks only, take no jobs.")

    def handle(self, *args: Any, **options: Any) -> None:
        available = registry.side_tasks()
        only, without = set(options["only"]), set(options["without"])
        if options["without_scheduler"]:
            without.add("scheduler")
        queues = options["queues"] or list(settings.HQ_QUEUES)
        if options["scheduler_only"]:
            only, queues = {"scheduler"}, []
        if options["no_jobs"]:
            queues = []
        unknown = (only | without) - set(available) - {"scheduler"}
        if unknown:
            raise CommandError(
                f"Unknown side task(s): {', '.join(sorted(unknown))}. Known: {', '.join(sorted(available))}."
            )
        chosen = {n: f for n, f in available.items() if (not only or n in only) and n not in without}
        concurrency = options["concurrency"] or settings.HQ_WORKER_CONCURRENCY
        if concurrency < 1:
            raise CommandError("--concurrency must be 1 or more.")
        self.stdout.write(
            f"HQ worker: queues {', '.join(queues) or '(none)'}; side tasks {', '.join(sorted(chosen)) or '(none)'}"
            f"{'; burst' if options['burst'] else ''}"
        )
        code = asyncio.run(
            run_process(
                store=store.for_database(),
                queues=queues,
                concurrency=concurrency,
                burst=options["burst"],
                side_tasks=chosen,
            )
        )
        if code:
            raise CommandError("A side task died; the worker stopped.")
