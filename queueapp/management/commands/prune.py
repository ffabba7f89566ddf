"""Run one retention pass by hand: delete finished jobs, their events and fires past the retention age."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from queueapp import retention


class Command(BaseCommand):
    help = (
        "Delete finished jobs (with their events and HITL requests) and finished schedule fires older than "
        "HQ_RETENTION_DAYS, in batches; prints the counts."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Count what would be deleted; delete nothing.")
        parser.add_argument(
            "--older-than-days",
            type=float,
            default=None,
            help=f"Retention age in days (default HQ_RETENTION_DAYS, now {settings.HQ_RETENTION_DAYS:g}).",
        )
        parser.add_argument(
            "--batch", type=int, default=None, help=f"Rows per transaction (default {settings.HQ_RETENTION_BATCH})."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days, batch = options["older_than_days"], options["batch"]
        if days is not None and days < 0:
            raise CommandError("--older-than-days must be 0 or more.")
        if batch is not None and batch < 1:
            raise CommandError("--batch must be 1 or more.")
        report = retention.prune(older_than_days=days, batch=batch, dry_run=options["dry_run"])
        if report.skipped:
            self.stdout.write("Another process is pruning right now; nothing done.")
            return
        verb = "Would delete" if report.dry_run else "Deleted"
        self.stdout.write(f"{verb} rows older than {report.cutoff.isoformat()}:")
        for kind, n in sorted(report.counts.items()):
            self.stdout.write(f"  {kind}: {n}")
