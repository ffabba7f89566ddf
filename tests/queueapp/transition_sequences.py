"""One sequence of job moves, run through a given executor, and the rows it leaves, comparable.

`tests/queueapp/test_transitions.py` runs `record` with the worker's PostgreSQL store (batched
psycopg SQL), with the ORM store on PostgreSQL, and in a subprocess on SQLite (`main`), and
compares what each leaves. Requests, the admin and the reaper move jobs through the services
(the ORM executor) in every run; starts and finishes go through the store under test.

Every step shifts HQ's clock by STEP_S, so each timestamp is recorded as the step it was written
in: the records of two executors match only when the same columns were set at the same steps.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from asgiref.sync import sync_to_async
from django.db import connections

from hq import clock
from queueapp import services, store
from queueapp.models import DecidedVia, Job, JobEvent
from queueapp.store import Outcome, Store
from tests import factories

#: Seconds HQ's clock moves per step: far more than a step takes, and than the reaper's 3 heartbeats.
STEP_S = 600.0
_ISO_TIME = re.compile(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d")
_UUID = re.compile(r"\A[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


class Sequence:
    """The moves of one run, each a step, with what each store call answered."""

    def __init__(self, job_store: Store) -> None:
        self.store = job_store
        self.loop = asyncio.new_event_loop()
        self.admin = factories.caller(admin=True)
        self.member = factories.caller(ws=self.admin.workspace)
        self.base = clock.now()
        self.jobs: dict[str, UUID] = {}
        self.answers: list[list[Any]] = []

    def step(self, steps: int = 1) -> None:
        clock.set_offset(clock.offset() + steps * STEP_S)

    def later(self, steps: int) -> datetime:
        return clock.now() + timedelta(seconds=steps * STEP_S)

    def job(self, label: str) -> Job:
        return Job.objects.get(pk=self.jobs[label])

    # --- moves through the services (requests, admin, reaper) -------------------------------

    def submit(self, label: str, **submission: Any) -> None:
        self.step()
        job, _ = services.job_submit(
            workspace=self.member.workspace,
            owner=self.member.user,
            submission=services.Submission(function="hq.echo", args={"label": label}, **submission),
        )
        self.jobs[label] = job.pk

    def cancel(self, label: str) -> None:
        self.step()
        services.job_cancel(job=self.job(label), actor=self.member.user)

    def retry(self, label: str) -> None:
        self.step()
        services.job_retry(job=self.job(label), actor=self.member.user)

    def decide(self, label: str, decision: str) -> None:
        self.step()
        request = self.job(label).hitl_requests.get(state="pending")
        services.hitl_decide(request=request, actor=self.admin.user, decision=decision, via=DecidedVia.API)

    def reap(self) -> None:
        self.step()
        self.answers.append(["reap", services.reap_pass()])

    # --- moves through the store under test (the worker) -------------------------------------

    def start(self, label: str, attempt: int, worker: str = "w-1") -> None:
        self.step()
        started = self.loop.run_until_complete(self.store.start(str(self.jobs[label]), attempt, worker))
        self.answers.append(["start", label, attempt, started is not None])

    def unmark(self, label: str, attempt: int) -> None:
        self.step()
        state = self.loop.run_until_complete(self.store.unmark(str(self.jobs[label]), attempt))
        self.answers.append(["unmark", label, attempt, state])

    def finish(
        self, label: str, attempt: int, move: str, kind: str, *, due_in: int | None = None, **fields: Any
    ) -> None:
        """End an attempt with `move`, as the worker records it; with `due_in`, the next attempt is
        due that many steps later and marked dispatched now (the worker pushes it itself)."""
        self.step()
        if due_in is not None:
            fields.update(due_at=self.later(due_in), dispatched_at=clock.now())
        outcome = Outcome(move, kind, **fields)
        recorded = self.loop.run_until_complete(self.store.finish(str(self.jobs[label]), attempt, outcome))
        self.answers.append(["finish", label, attempt, move, recorded])

    def run(self) -> None:
        """Every move in MOVES, and starts and finishes each executor must refuse."""
        s = self
        s.loop.run_until_complete(s.store.open())
        # A failure with tries left, a backoff, then success.
        s.submit("retried", max_tries=2)
        s.start("retried", 2)  # a delivery of an attempt that is not next
        s.start("retried", 1)
        s.start("retried", 1)  # the same delivery twice
        error = "ValueError: boom"
        detail = {"error": error, "retry_in_s": 2 * STEP_S}
        s.finish("retried", 1, "retry_later", "retry_scheduled", error=error, due_in=2, detail=detail)
        s.start("retried", 2)  # not due yet
        s.unmark("retried", 2)
        s.start("retried", 2)
        s.finish("retried", 2, "succeed", "succeeded", result={"label": "retried"})
        s.finish("retried", 2, "fail", "failed", error="late")  # already finished
        # Cancelled while waiting, then retried twice: a failed run, then a fresh one.
        s.submit("cancelled", max_tries=1)
        s.cancel("cancelled")
        s.start("cancelled", 1)
        s.unmark("cancelled", 1)
        s.retry("cancelled")
        s.start("cancelled", 1)
        s.finish("cancelled", 1, "fail", "failed", error="no", detail={"error": "no"})
        s.retry("cancelled")
        s.start("cancelled", 2)
        s.finish("cancelled", 2, "succeed", "succeeded", result={"n": 2})
        # Cancelled while running: asked once (a second ask writes nothing), then the worker stops it.
        s.submit("aborted")
        s.start("aborted", 1)
        s.cancel("aborted")
        s.cancel("aborted")
        s.finish("aborted", 1, "cancel_running", "cancelled", error="Cancelled while running.")
        # Asked to cancel while running, but the body failed by itself before the abort reached it,
        # with a try left and with none: cancelled either way, never retried.
        s.submit("raced", max_tries=2)
        s.start("raced", 1)
        s.cancel("raced")
        s.finish("raced", 1, "retry_later", "retry_scheduled", error=error, due_in=2, detail=detail)
        s.start("raced", 2)  # the retry's push, which its worker made before it knew
        s.submit("raced_last", max_tries=1)
        s.start("raced_last", 1)
        s.cancel("raced_last")
        s.finish("raced_last", 1, "fail", "failed", error="no", detail={"error": "no"})
        # Deferred at submit, in a paused queue, then resumed; the worker stops under it.
        s.submit("deferred", defer_by_seconds=2 * STEP_S, max_tries=2)
        s.start("deferred", 1)  # not due yet
        s.step()
        services.queue_pause(queue="default", workspace=s.member.workspace, actor=s.admin.user)
        s.start("deferred", 1)  # due, but paused
        s.unmark("deferred", 1)
        s.step()
        services.queue_resume(queue="default", workspace=s.member.workspace)
        s.start("deferred", 1)
        s.finish("deferred", 1, "requeue", "requeued", error="Interrupted: the worker stopped.", due_in=0)
        s.start("deferred", 2)
        s.finish("deferred", 2, "succeed", "succeeded", result=None)
        # Lost with its worker: requeued by the reaper, then failed by it with no tries left.
        s.submit("lost", max_tries=2)
        s.start("lost", 1, worker="w-dead")
        s.reap()
        s.start("lost", 2, worker="w-dead")
        s.reap()
        # Lost after a cancel was asked for: the reaper cancels it.
        s.submit("lost_cancelled")
        s.start("lost_cancelled", 1, worker="w-dead")
        s.cancel("lost_cancelled")
        s.reap()
        # Approved, then run; rejected, then retried back to awaiting a new decision.
        s.submit("approved", requires_approval=True, approval_reason="check it")
        s.start("approved", 1)  # not before the decision
        s.decide("approved", "approve")
        s.start("approved", 1)
        s.finish("approved", 1, "succeed", "succeeded", result={"ok": True})
        s.submit("rejected", requires_approval=True)
        s.decide("rejected", "reject")
        s.retry("rejected")
        s.loop.run_until_complete(s.store.close())
        # The ORM store's thread keeps its connection otherwise (PostgreSQL would not drop the test database).
        s.loop.run_until_complete(sync_to_async(connections.close_all, thread_sensitive=True)())
        s.loop.close()

    # --- the record ------------------------------------------------------------------------------

    def record(self) -> dict[str, Any]:
        """Each job's row and events, with ids named and times as the step they were written in."""
        names = {
            str(self.member.workspace.pk): "workspace",
            str(self.member.user.pk): "member",
            str(self.admin.user.pk): "admin",
            **{str(pk): label for label, pk in self.jobs.items()},
        }
        event_fields = [f for f in JobEvent._meta.concrete_fields if f.attname != "id"]
        jobs = {}
        for label, pk in self.jobs.items():
            row = Job.objects.get(pk=pk)
            events = JobEvent.objects.filter(job_id=pk).order_by("at", "id")
            jobs[label] = {
                "row": {f.attname: self._plain(getattr(row, f.attname), names) for f in Job._meta.concrete_fields},
                "events": [
                    {f.attname: self._plain(getattr(e, f.attname), names) for f in event_fields} for e in events
                ],
            }
        return {"answers": self.answers, "jobs": jobs}

    def _plain(self, value: Any, names: dict[str, str]) -> Any:
        if isinstance(value, str) and _ISO_TIME.match(value):
            value = datetime.fromisoformat(value)
        if isinstance(value, datetime):
            return f"step {round((value - self.base).total_seconds() / STEP_S)}"
        if isinstance(value, UUID) or (isinstance(value, str) and _UUID.match(value)):
            return names.get(str(value), "<another id>")
        if isinstance(value, dict):
            return {k: self._plain(v, names) for k, v in value.items()}
        if isinstance(value, list):
            return [self._plain(v, names) for v in value]
        return value


def record(job_store: Store) -> dict[str, Any]:
    """Run the sequence through `job_store`; return its record. Leaves HQ's clock as it found it."""
    offset = clock.offset()
    try:
        sequence = Sequence(job_store)
        sequence.run()
        return sequence.record()
    finally:
        clock.set_offset(offset)


def main() -> None:
    """Print the record of the configured database's store, as JSON (run in a subprocess)."""
    sys.stdout.write(json.dumps(record(store.for_database())) + "\n")
