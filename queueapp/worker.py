"""The worker process: ARQ delivers attempts, HQ owns their state, retries, timeouts and crash recovery.

`HQWorker` is a small `arq.Worker` subclass (pinned to arq 0.28.0, see tests/queueapp) that waits
on a pub/sub nudge instead of a fixed poll, so an idle worker starts a new job within
milliseconds. `Runtime` is shared by the workers of one process: it starts and finishes attempts
through the store (`queueapp.store`) and runs the side tasks (relay, reaper, scheduler...).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import secrets
import signal
import socket
import time
import traceback
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any

import redis
import redis.asyncio as aioredis
from arq.connections import RedisSettings, create_pool
from arq.worker import Worker, func
from django.conf import settings
from django.db.utils import DatabaseError

from hq import clock, metrics
from queueapp import registry, retry, selectors, transitions, transport
from queueapp.registry import JobContext
from queueapp.runtime import run_sync
from queueapp.services import engine
from queueapp.store import Batcher, Held, Outcome, Started, Store, Woken

logger = logging.getLogger("hq.worker")

ARQ_TIMEOUT_S = 7 * 24 * 3600  # HQ enforces each job's own timeout; ARQ's must never fire first.


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))


class Deadlines:
    """Attempts' time limits on a coarse clock: one timer per `STEP` seconds of due times.

    `asyncio.timeout` makes a timer per attempt, and the loop's heap of cancelled timers cost about
    a tenth of the worker's CPU per job (py-spy, bench/RESULTS.md). Here attempts due in the same
    step share one timer; an attempt that ends leaves its step, and the last to leave cancels the
    step's timer (so a week-long limit holds nothing once its attempts are over). A limit fires up
    to `STEP` late.
    """

    STEP = 0.05

    def __init__(self) -> None:
        self._due: dict[int, tuple[set[asyncio.Task[Any]], asyncio.TimerHandle]] = {}
        self._fired: set[asyncio.Task[Any]] = set()

    def arm(self, task: asyncio.Task[Any], seconds: float) -> int:
        """Cancel `task` once `seconds` have passed, unless `disarm` comes first; returns its step."""
        loop = asyncio.get_running_loop()
        step = math.ceil((loop.time() + seconds) / self.STEP)
        due = self._due.get(step)
        if due is None:
            due = self._due[step] = (set(), loop.call_at(step * self.STEP, self._expire, step))
        due[0].add(task)
        return step

    def disarm(self, step: int, task: asyncio.Task[Any]) -> bool:
        """Stop watching `task`; True when its limit had already cancelled it."""
        due = self._due.get(step)
        if due is not None:
            due[0].discard(task)
            if not due[0]:
                del self._due[step]
                due[1].cancel()
        if task in self._fired:
            self._fired.discard(task)
            return True
        return False

    def _expire(self, step: int) -> None:
        tasks, _ = self._due.pop(step, (set(), None))
        for task in tasks:
            if not task.done():
                self._fired.add(task)
                task.cancel()


class Runtime:
    """State shared by one worker process: identity, store, counters, stop and wake signals.

    Side tasks see it as a `queueapp.runtime.SideTaskRuntime`.
    """

    def __init__(self, store: Store, queues: list[str], concurrency: int, burst: bool = False) -> None:
        self.store = store
        self.queues = queues
        self.concurrency = concurrency
        self.burst = burst
        self.hostname = socket.gethostname()
        self.pid = os.getpid()
        self.worker_id = f"{self.hostname}:{self.pid}:{secrets.token_hex(3)}"
        self.workers: list[HQWorker] = []
        self.stopping = asyncio.Event()
        self.finished = asyncio.Event()  # the drain is over: the last heartbeat may go
        self.relay_wake = asyncio.Event()
        self.events: dict[str, asyncio.Event] = {}
        self.jobs_done = 0
        self.redis: aioredis.Redis | None = None
        self.deadlines = Deadlines()
        if store is not None:  # None in tests that drive a runtime without a database
            store.on_woken = self.push_woken

    def event(self, name: str) -> asyncio.Event:
        """An event set whenever a nudge with this message arrives (e.g. "*schedules*")."""
        return self.events.setdefault(name, asyncio.Event())

    @property
    def running(self) -> int:
        return sum(len(w.tasks) for w in self.workers)

    def heartbeat(self) -> dict[str, Any]:
        """`engine.worker_heartbeat`'s arguments: who we are and the attempts in flight now.

        Taken on the event loop, so every attempt whose START was stamped before `seen_at` has
        its task listed unless that task has ended.
        """
        attempts = sorted(arq_id for w in self.workers for arq_id, t in w.tasks.items() if not t.done())
        return {
            "worker_id": self.worker_id,
            "hostname": self.hostname,
            "pid": self.pid,
            "queues": self.queues,
            "concurrency": self.concurrency,
            "running": len(attempts),
            "jobs_done": self.jobs_done,
            "attempts": attempts,
            "seen_at": clock.now(),
        }

    async def sleep(self, seconds: float, wake: asyncio.Event | None = None) -> None:
        """Sleep until the timeout, a stop, or `wake` is set."""
        waits = [asyncio.ensure_future(self.stopping.wait())]
        if wake is not None:
            waits.append(asyncio.ensure_future(wake.wait()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            if wake is not None:
                wake.clear()

    # --- attempts ------------------------------------------------------------------------------

    async def run_attempt(self, worker: HQWorker, arq_id: str, job_id: str, attempt: int) -> None:
        started = await self.store.start(job_id, attempt, self.worker_id)
        if isinstance(started, Held):
            await self._held(worker, arq_id, started)
            return
        if started is None:
            # Paused, not yet due, or no longer waiting: leave ARQ, then hand a waiting row back to
            # the relay (in this order, so that the relay's next push of it is not refused).
            try:
                await asyncio.shield(worker.forget_now(arq_id))
            except (redis.RedisError, OSError) as exc:
                logger.warning("could not clear attempt %s from Redis: %s", arq_id, exc)
            await self.store.unmark(job_id, attempt)
            return
        # Abortable while the body runs (ARQ's `_cancel_aborted_jobs` looks in `job_tasks`); an abort that
        # came earlier stays in ARQ's set until the next check finds this task.
        task = asyncio.current_task()
        if task is not None:
            worker.job_tasks[arq_id] = task
        t0 = time.monotonic()
        wait_s = (clock.now() - started.due_at).total_seconds() if started.due_at else None
        metrics.job_started(started.queue, started.function, wait_s)
        try:
            outcome = await self._execute(started, attempt)
        except asyncio.CancelledError:
            worker.body_ended(arq_id, task)
            if arq_id in worker.aborting_tasks:
                outcome = _after(started, attempt, "Cancelled while running.", retry.Cause.INTERRUPTED, cancelled=True)
            else:
                outcome = _after(started, attempt, "Interrupted: the worker stopped.", retry.Cause.INTERRUPTED)
            await self._finish(started, attempt, outcome, time.monotonic() - t0)
            raise
        # The body is over: its slot takes the next job while this attempt's end is recorded, except
        # under a limit gate. There the slot waits for the end (and the gate's place) to be
        # committed: a job claimed meanwhile would find the gate still full and be held, then woken
        # and claimed again (issue 18's keyed drain held 0.4 jobs per job and ran at 0.5x the plain
        # drain; holding the slot, it holds none in that bench).
        gated = started.limit_scope is not None
        worker.body_ended(arq_id, task, free=not gated)
        on_written = partial(worker.free_slot, arq_id) if gated else None
        await self._finish(started, attempt, outcome, time.monotonic() - t0, on_written=on_written)

    async def _held(self, worker: HQWorker, arq_id: str, held: Held) -> None:
        """A limit kept the attempt from starting: leave ARQ (its slot takes the next job). Over a
        rate it is pushed again for its `retry_at`; over a concurrency limit it waits in
        PostgreSQL, marked held, until a finish under its gate wakes it (`push_woken`)."""
        metrics.job_held(held.queue, held.function, held.reason)
        try:
            await asyncio.shield(worker.forget_now(arq_id))
        except (redis.RedisError, OSError) as exc:
            logger.warning("could not clear attempt %s from Redis: %s", arq_id, exc)
            return  # marked dispatched: the relay pushes it again after its grace
        if held.retry_at is None:
            # A finish under its gate may have woken it between START's hold and the forget above:
            # that wake's push was refused (ARQ held the attempt still) and the forget took the
            # attempt out, so nothing would push it before the relay's grace. Push it here.
            woken = await self.store.woken(str(held.id), held.attempt)
            if woken is not None:
                await self.push_woken([woken])
        elif self.redis is not None:
            lane = registry.fair_lane(held.function, held.workspace_id)
            push = transport.Push(held.id, held.attempt, held.queue, held.retry_at, lane, held.priority)
            try:
                await transport.apush([push], self.redis)
            except redis.RedisError:
                logger.warning("could not push job %s held by a rate; the relay will", held.id)
                return
            # Claim it at its turn, not at the next poll: a start late by a poll pushes the gate's
            # next turn past the turn of the job after it (README, "Limits").
            delay_s = (held.retry_at - clock.now()).total_seconds()
            asyncio.get_running_loop().call_later(max(delay_s, 0.0), worker.wake.set)

    async def push_woken(self, woken: list[Woken]) -> None:
        """Push the held jobs a finish woke (the store marked them dispatched)."""
        if self.redis is None:
            return
        pushes = [
            transport.Push(
                w.id, w.attempts + 1, w.queue, w.due_at, registry.fair_lane(w.function, w.workspace_id), w.priority
            )
            for w in woken
        ]
        try:
            await transport.apush(pushes, self.redis)
        except redis.RedisError:
            logger.warning("could not push %d woken job(s); the relay will", len(pushes))

    async def _execute(self, started: Started, attempt: int) -> Outcome:
        fn = registry.get_function(started.function)
        if fn is None:
            error = f"Function '{started.function}' is not registered on this worker."
            return Outcome("fail", "failed", error=error, detail={"error": error})
        ctx = _context(started, attempt, self.worker_id)
        task = asyncio.current_task()
        assert task is not None  # an attempt always runs in its own task (`run_claimed`)
        step = self.deadlines.arm(task, started.timeout_s)
        try:
            result = await (fn.fn(ctx) if fn.is_async else run_sync(fn.fn, ctx))
        except asyncio.CancelledError as exc:
            # The limit's own cancel alone is a timeout. An abort or the worker stopping (beside the
            # limit, or not) goes on to run_attempt, which records it as such.
            if not self.deadlines.disarm(step, task) or task.uncancel() > 0:
                raise
            timed_out = TimeoutError(f"Timed out after {started.timeout_s}s.").with_traceback(exc.__traceback__)
            return _after(started, attempt, str(timed_out), retry.Cause.ERROR, exc=timed_out)
        except Exception as exc:  # a job's own failure is data (its own TimeoutError too), not a worker crash
            self.deadlines.disarm(step, task)
            return _after(started, attempt, _describe(exc), retry.Cause.ERROR, exc=exc)
        self.deadlines.disarm(step, task)
        try:
            return Outcome("succeed", "succeeded", result=_jsonable(result))
        except (TypeError, ValueError) as exc:
            # The body ran; running it again would not make its result JSON.
            error = f"Result is not JSON: {exc}"
            return Outcome("fail", "failed", error=error, detail={"error": error, **failure_detail(exc)})

    async def _finish(
        self,
        started: Started,
        attempt: int,
        outcome: Outcome,
        run_s: float,
        on_written: Callable[[], None] | None = None,
    ) -> None:
        """Record the attempt's end, then push its retry: whole even if this task is cancelled meanwhile.

        Recording an attempt's end (and pushing its retry) must finish before a draining worker
        closes its pool. A cancel that arrives while the batch is written waits for the batch, lets
        the rest run, and is passed on at the end. `on_written` is called once the end's batch is
        committed (or failed), before the end hook and the retry's push.
        """
        cancelled: asyncio.CancelledError | None = None
        writing = self.store.finishing(str(started.id), attempt, outcome)
        if on_written is not None:
            writing.add_done_callback(lambda _: on_written())
        written = False
        recorded: str | None = None
        try:
            try:
                recorded = await asyncio.shield(writing)
            except asyncio.CancelledError as exc:
                cancelled = exc
                recorded = await writing
            written = True
        except Exception:
            # The reaper finds the row still `running` once this worker's heartbeat stops, and the
            # job runs again: job functions must be idempotent (README, "Queue").
            logger.exception("could not record the end of job %s attempt %s", started.id, attempt)
        try:
            if written:
                await self._recorded(started, attempt, outcome, run_s, recorded)
        finally:
            if cancelled is not None:
                raise cancelled

    async def _recorded(
        self, started: Started, attempt: int, outcome: Outcome, run_s: float, recorded: str | None
    ) -> None:
        """What follows a recorded end (`recorded`, the move written): counts, the function's end
        hook, the retry's push."""
        self.jobs_done += 1
        if recorded is None:
            logger.warning("job %s attempt %s was moved by someone else; result discarded", started.id, attempt)
            return
        if recorded != outcome.move:  # a cancel asked for while it ran took the place of its retry or failure
            detail = {k: v for k, v in (outcome.detail or {}).items() if k != "retry_in_s"}
            ended = outcome.ended_at
            outcome = Outcome(recorded, retry.CANCEL_KIND, error=outcome.error, detail=detail, ended_at=ended)
        metrics.job_finished(started.queue, started.function, transitions.MOVES[outcome.move].target, run_s)
        if outcome.finished:
            await _ended(started, attempt, outcome, self.worker_id)
        # A next attempt (retry_later, requeue) has a due time; `_after` marked it dispatched for this push.
        if outcome.due_at is not None and self.redis is not None:
            lane = registry.fair_lane(started.function, started.workspace_id)
            push = transport.Push(started.id, attempt + 1, started.queue, outcome.due_at, lane, started.priority)
            try:
                await transport.apush([push], self.redis)
            except redis.RedisError:
                logger.warning("could not push the retry of job %s; the relay will", started.id)


def _context(started: Started, attempt: int, worker_id: str) -> JobContext:
    """What the body of a started attempt receives (and, at the end, its function's end hook)."""
    return JobContext(
        job_id=started.id,
        workspace_id=started.workspace_id,
        owner_id=started.owner_id,
        function=started.function,
        args=started.args or {},
        attempt=attempt,
        max_tries=started.max_tries,
        correlation_id=started.correlation_id,
        queue=started.queue,
        worker_id=worker_id,
        enqueued_at=started.created_at,
        first_started_at=started.first_started_at,
        started_at=started.started_at,
    )


async def _ended(started: Started, attempt: int, outcome: Outcome, worker_id: str) -> None:
    """Run the function's end hook (`JobFunction.on_end`) for a job whose end was just recorded."""
    fn = registry.get_function(started.function)
    if fn is None or fn.on_end is None:
        return
    end = registry.JobEnd(
        context=_context(started, attempt, worker_id),
        state=transitions.MOVES[outcome.move].target,
        kind=outcome.kind,
        detail=outcome.detail,
        result=outcome.result,
        error=outcome.error,
        finished_at=outcome.ended_at,
    )
    try:
        await fn.on_end(end)
    except Exception:  # a hook's failure must not take the worker down; the job's end is recorded
        logger.exception("end hook of %s failed for job %s", started.function, started.id)


def _after(
    started: Started,
    attempt: int,
    error: str,
    cause: retry.Cause,
    *,
    cancelled: bool = False,
    exc: BaseException | None = None,
) -> Outcome:
    """How an attempt that ended without a result is recorded, as the retry policy decides.

    A next attempt is marked dispatched now: this worker pushes it itself once the finish is recorded.
    The event of an attempt whose body raised `exc` keeps the exception's class and traceback
    (`failure_detail`).
    """
    nxt = retry.after_attempt(
        cause=cause,
        attempt=attempt,
        tries_base=started.tries_base,
        max_tries=started.max_tries,
        backoff_base_s=started.retry_backoff_s,
        cancel_requested=cancelled,
    )
    if nxt.move == "cancel_running":
        return Outcome(nxt.move, nxt.kind, error=error)
    raised = failure_detail(exc) if exc is not None else {}
    if nxt.delay_s is None:
        return Outcome(nxt.move, nxt.kind, error=error, detail={"error": error[:2000], **raised})
    now = clock.now()
    return Outcome(
        nxt.move,
        nxt.kind,
        error=error,
        due_at=now + timedelta(seconds=nxt.delay_s),
        dispatched_at=now,
        detail={"error": error[:2000], "retry_in_s": round(nxt.delay_s, 3), **raised},
    )


def _describe(exc: BaseException) -> str:
    tb = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return tb[:4000]


#: The most of a failed attempt's traceback its event keeps (the end, where the error is).
MAX_TRACEBACK_CHARS = 16_000


def failure_detail(exc: BaseException) -> dict[str, str]:
    """What a failed attempt's event records of the exception: its class path and traceback.

    The traceback is cut to its last MAX_TRACEBACK_CHARS characters (a deep recursion's is huge),
    marked where it was cut.
    """
    tb = "".join(traceback.format_exception(exc))
    if len(tb) > MAX_TRACEBACK_CHARS:
        tb = "[... traceback cut ...]\n" + tb[-MAX_TRACEBACK_CHARS:]
    cls = type(exc)
    return {"exception": f"{cls.__module__}.{cls.__qualname__}", "traceback": tb}


async def _arq_entry(ctx: dict[str, Any], job_id: str, attempt: int) -> None:
    """The one ARQ function, as ARQ's own `run_job` would call it (the payload's arguments).

    `HQWorker` never goes through ARQ's `run_job`: it runs claimed attempts in `run_claimed`.
    """
    worker: HQWorker = ctx["hq_worker"]
    await worker.runtime.run_attempt(worker, ctx["job_id"], job_id, attempt)


class HQWorker(Worker):
    """An ARQ worker for one HQ queue that sleeps on a nudge instead of a fixed poll."""

    def __init__(self, runtime: Runtime, queue: str, redis_pool: Any = None) -> None:
        self.runtime = runtime
        self.hq_queue = queue
        self.wake = asyncio.Event()
        self.abort_wake = True  # look for abort requests on the first poll, then when nudged
        self.next_abort_check = 0.0
        self.lane_running: Counter[str] = Counter()
        self.slot_lanes: dict[str, str] = {}  # claimed attempt -> its lane, while it holds a slot
        self.ending = 0  # attempts whose body is over and whose end is still being recorded
        self.finished_ids: Batcher[str, None] = Batcher(self._forget_finished)
        self.forgotten: set[str] = set()  # attempts that left ARQ before their task ended
        super().__init__(
            functions=[
                func(_arq_entry, name=transport.ARQ_FUNCTION, timeout=ARQ_TIMEOUT_S, max_tries=1, keep_result=0)
            ],
            queue_name=transport.queue_key(queue),
            redis_settings=RedisSettings.from_dsn(settings.REDIS_URL),
            redis_pool=redis_pool,
            burst=runtime.burst,
            max_jobs=runtime.concurrency,
            poll_delay=settings.HQ_WORKER_POLL_S,
            keep_result=0,
            job_timeout=ARQ_TIMEOUT_S,
            max_tries=1,
            retry_jobs=False,
            allow_abort_jobs=True,
            handle_signals=False,
            health_check_interval=3600,
            log_results=False,
            ctx={},
        )
        self.ctx["hq_worker"] = self

    async def main(self) -> None:
        """ARQ's main loop with the poll sleep replaced by 'nudge or poll_delay, whichever first'."""
        if self._pool is None:
            self._pool = await create_pool(self.redis_settings, default_queue_name=self.queue_name)
        self.ctx["redis"] = self.pool
        while not self.runtime.stopping.is_set() or self.tasks:
            # Cleared before polling, so a job that ends while we poll is not a lost wake-up.
            self.wake.clear()
            try:
                await self._poll_iteration()
                if self.burst and await self._drained():
                    return
            except (redis.RedisError, OSError) as exc:
                # Redis is away: jobs already recorded stay in PostgreSQL and the relay re-pushes
                # them once it is back (a restarted Redis reports a new run_id).
                logger.warning("worker for queue %s lost Redis (%s); retrying", self.hq_queue, exc)
                await self.runtime.sleep(1.0)
                continue
            if self.runtime.stopping.is_set() and not self.allow_pick_jobs:
                await asyncio.sleep(0.05)
                continue
            try:
                await asyncio.wait_for(self.wake.wait(), self.poll_delay_s)
            except TimeoutError:
                pass

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        # The slot is free only now: look for the next job at once rather than after the poll delay.
        self.wake.set()

    def share(self) -> transport.Share:
        """This worker's fair-share limits (`HQ_WORKSPACE_SHARE`, `HQ_ENGINE_RESERVED_SLOTS`)."""
        cap = max(1, int(settings.HQ_WORKSPACE_SHARE * self.max_jobs))
        reserved = min(settings.HQ_ENGINE_RESERVED_SLOTS, self.max_jobs - 1)
        return transport.Share(cap=cap, user_limit=self.max_jobs - reserved, running=dict(self.lane_running))

    async def _poll_iteration(self) -> None:
        """ARQ's poll with the read of its queue replaced by a fair claim across lanes."""
        if self.allow_pick_jobs and self.job_counter < self.max_jobs:
            await self.claim_fairly()
        if self.allow_abort_jobs and (self.abort_wake or time.monotonic() >= self.next_abort_check):
            # An abort is nudged ("*abort*"); the poll delay is the fallback for a nudge lost.
            self.abort_wake = False
            self.next_abort_check = time.monotonic() + self.poll_delay_s
            await self._cancel_aborted_jobs()
        for arq_id, task in list(self.tasks.items()):
            if task.done():
                del self.tasks[arq_id]
                task.result()  # an error in run_job surfaces here, as in ARQ
        await self.heart_beat()

    async def claim_fairly(self) -> None:
        """Take every free slot's worth of attempts in one Redis call (`transport.claim`).

        ARQ reads the first due ids of its queue and checks each with four round trips, so one
        workspace's flood at the head of the queue would hold every slot; the claim picks lane by
        lane instead, and never gives one workspace more than its share of this worker's slots.
        """
        free = 0
        if self.ending >= self.max_jobs:
            return  # PostgreSQL is behind on recording ends: take no more until it catches up
        while self.job_counter + free < self.max_jobs and not self.sem.locked():
            await self.sem.acquire()
            free += 1
        if not free:
            return
        ttl_ms = int(self.in_progress_timeout_s * 1000)
        try:
            claimed = await transport.claim(self.pool, self.hq_queue, free, self.share(), ttl_ms)
        except BaseException:
            claimed = []
            raise
        finally:
            for _ in range(free - len(claimed)):
                self.sem.release()
        for arq_id, _score, lane in claimed:
            held = self.tasks.get(arq_id)
            if held is not None and not held.done():
                # The relay reclaimed an attempt this worker holds and pushed it again: the task
                # that holds it starts it (or is refused) and clears its keys when it ends. A
                # second task would share its bookkeeping, keyed by the attempt's id.
                self.sem.release()
                continue
            self.job_counter += 1
            self.lane_running[lane] += 1
            self.slot_lanes[arq_id] = lane
            task = self.loop.create_task(self.run_claimed(arq_id))
            task.add_done_callback(partial(self._attempt_done, arq_id))
            self.tasks[arq_id] = task

    async def run_claimed(self, arq_id: str) -> None:
        """Run a claimed attempt, then take it out of ARQ's keys (batched with the others ending).

        ARQ's own `run_job` spends two MULTI round trips per job on its payload, retry counter and
        result keys. HQ needs none of them: the attempt is named by its id (`<job id>:<attempt>`),
        PostgreSQL holds its state and retries, and ARQ keeps no results. An abort cancels the
        inner task only (`run_attempt` puts it in `job_tasks` once the attempt has started).
        """
        job_id, _, attempt = arq_id.rpartition(":")
        inner = self.loop.create_task(self.runtime.run_attempt(self, arq_id, job_id, int(attempt)))
        try:
            await inner
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # this task was cancelled (a drain's end), not just the attempt by an abort
        except Exception:
            # As ARQ's run_job: logged, and the attempt leaves ARQ. Its row is still waiting or
            # running in PostgreSQL, where the relay or the reaper picks it up again.
            logger.exception("attempt %s failed outside the job body", arq_id)
        finally:
            if self.job_tasks.get(arq_id) is inner:
                del self.job_tasks[arq_id]
            self.aborting_tasks.discard(arq_id)
            # Not waited for: the attempt is over, and its in-progress key keeps it from being
            # claimed again until the batch clears it (`close` waits for the last batch). Should
            # Redis fail the batch, that key (a week) still does; PostgreSQL has the outcome. An
            # attempt that never started left ARQ already (`forget_now`): forgetting it again
            # could take out its next push (a held job woken meanwhile has the same attempt id).
            if arq_id in self.forgotten:
                self.forgotten.discard(arq_id)
            else:
                self.finished_ids.add(arq_id)

    async def forget_now(self, arq_id: str) -> None:
        """Take an attempt that will not start out of ARQ now (before the relay or a wake pushes
        it again), and not once more when its task ends."""
        await self.finished_ids.submit(arq_id)
        self.forgotten.add(arq_id)

    async def _forget_finished(self, arq_ids: list[str]) -> list[None]:
        await transport.aforget(self.pool, self.hq_queue, arq_ids)
        return [None] * len(arq_ids)

    async def close(self) -> None:
        """Let the attempts end and leave ARQ's keys, then close as ARQ does."""
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        await self.finished_ids.idle()
        await super().close()

    def body_ended(self, arq_id: str, task: asyncio.Task[Any] | None, free: bool = True) -> None:
        """The attempt's body is over: no abort can reach it now, and (unless `free` is false) its
        slot is free."""
        if task is not None and self.job_tasks.get(arq_id) is task:
            del self.job_tasks[arq_id]
        if free:
            self.free_slot(arq_id)

    def free_slot(self, arq_id: str) -> None:
        """Give the attempt's slot (and its lane's share) to the next job; once per attempt.

        A slot bounds running job bodies. `run_attempt` frees it when the body ends, before the
        end is recorded (after it, for an attempt under a limit gate); an attempt that never
        started frees it when its task is done.
        """
        lane = self.slot_lanes.pop(arq_id, None)
        if lane is None:
            return
        if arq_id in self.tasks and not self.tasks[arq_id].done():
            self.ending += 1
        self.lane_running[lane] -= 1
        if not self.lane_running[lane]:
            del self.lane_running[lane]
        self._release_sem_dec_counter_on_complete()

    def _attempt_done(self, arq_id: str, _task: asyncio.Task[Any]) -> None:
        if arq_id in self.slot_lanes:
            self.free_slot(arq_id)
        else:
            self.ending -= 1
            self.wake.set()  # a claim held back by `ending` may go on

    async def _drained(self) -> bool:
        if self.tasks and any(not t.done() for t in self.tasks.values()):
            return False
        return await transport.startable_count(self.hq_queue, self.pool, transport.clock_ms()) == 0

    async def stop_picking(self) -> None:
        self.allow_pick_jobs = False
        self.wake.set()


async def _listen_nudges(runtime: Runtime, client: aioredis.Redis) -> None:
    """Wake the right worker when a job is pushed, or every worker for an abort or a resume."""
    while not runtime.stopping.is_set():
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(transport.nudge_channel())
            while not runtime.stopping.is_set():
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if msg is None:
                    continue
                queue = msg["data"].decode() if isinstance(msg["data"], bytes) else str(msg["data"])
                for w in runtime.workers:
                    if queue == "*abort*":
                        w.abort_wake = True
                    if queue in (w.hq_queue, "*abort*"):
                        w.wake.set()
                runtime.relay_wake.set()
                if queue in runtime.events:
                    runtime.events[queue].set()
        except (redis.RedisError, OSError) as exc:
            logger.warning("nudge listener lost Redis (%s); falling back to polling", exc)
            await runtime.sleep(1.0)
        finally:
            try:
                await pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated in redis-py 5
            except Exception:
                pass


async def _heartbeat(runtime: Runtime) -> None:
    """Beat until the drain is over (`runtime.finished`), not just until a stop is asked for.

    A draining worker still runs jobs for up to HQ_SHUTDOWN_GRACE_S, longer than the 3 intervals
    after which a silent worker counts as dead; stopping the beats at SIGTERM let another worker's
    reaper hand those jobs out again while they were still running here. The loop ends by itself
    rather than being cancelled, so no beat is still being written after `worker_stopped`.
    """
    while True:
        try:
            await run_sync(engine.worker_heartbeat, **runtime.heartbeat())
            metrics.worker_heartbeat()
        except DatabaseError as exc:
            logger.warning("heartbeat failed: %s", exc)
        if runtime.finished.is_set():
            return
        try:
            await asyncio.wait_for(runtime.finished.wait(), settings.HQ_HEARTBEAT_INTERVAL_S)
        except TimeoutError:
            pass


async def run_process(
    *,
    store: Store,
    queues: list[str],
    concurrency: int,
    burst: bool = False,
    side_tasks: dict[str, registry.SideTask] | None = None,
    install_signals: bool = True,
) -> int:
    """Run workers for `queues` plus the side tasks until stopped (or drained, with `burst`)."""
    runtime = Runtime(store, queues, concurrency, burst=burst)
    loop = asyncio.get_running_loop()
    if install_signals:
        # First, so a stop that arrives during start-up is a clean stop too.
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, runtime.stopping.set)
    await store.open()
    client: aioredis.Redis = aioredis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=2)
    runtime.redis = client
    await run_sync(engine.worker_heartbeat, **runtime.heartbeat())
    exit_code = 0
    background = [
        asyncio.create_task(_heartbeat(runtime), name="heartbeat"),
        asyncio.create_task(_listen_nudges(runtime, client), name="nudges"),
    ]
    try:
        if burst:
            await _run_burst(runtime)
        else:
            exit_code = await _run_forever(runtime, side_tasks or {})
    finally:
        runtime.stopping.set()
        runtime.finished.set()
        for task in background[1:]:  # all but the heartbeat, which ends by itself
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        for w in runtime.workers:
            await w.close()
        await client.aclose()
        await store.close()
        await run_sync(engine.worker_stopped, worker_id=runtime.worker_id)
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
    return exit_code


async def _run_burst(runtime: Runtime) -> None:
    """Push what is due, drain it, and repeat until nothing is left to push or run."""
    while True:
        await run_sync(engine.relay_pass, everything=True)
        runtime.workers = [HQWorker(runtime, q) for q in runtime.queues]
        await asyncio.gather(*(w.main() for w in runtime.workers))
        for w in runtime.workers:
            await w.close()
        if not await run_sync(_due_waiting_exists, runtime.queues):
            return


def _due_waiting_exists(queues: list[str]) -> bool:
    return selectors.jobs_due_unpaused(queues=queues).exists()


async def _run_forever(runtime: Runtime, side_tasks: dict[str, registry.SideTask]) -> int:
    runtime.workers = [HQWorker(runtime, q) for q in runtime.queues]
    tasks = {
        asyncio.create_task(w.main(), name=f"worker:{w.hq_queue}"): f"worker:{w.hq_queue}" for w in runtime.workers
    }
    tasks.update({asyncio.create_task(fn(runtime), name=name): name for name, fn in side_tasks.items()})
    stop_wait = asyncio.create_task(runtime.stopping.wait(), name="stop")
    done, _ = await asyncio.wait([*tasks, stop_wait], return_when=asyncio.FIRST_COMPLETED)
    exit_code = 0
    for task, name in tasks.items():
        if task in done and task.exception() is not None:
            logger.error("%s died: %r; stopping the worker", name, task.exception())
            exit_code = 1
    runtime.stopping.set()
    await _drain(runtime)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    stop_wait.cancel()
    return exit_code


async def _drain(runtime: Runtime) -> None:
    """Stop taking jobs, let running ones finish for the grace period, then interrupt the rest."""
    for w in runtime.workers:
        await w.stop_picking()
    deadline = time.monotonic() + settings.HQ_SHUTDOWN_GRACE_S
    while runtime.running and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        for w in runtime.workers:
            for job_id, t in list(w.tasks.items()):
                if t.done():
                    del w.tasks[job_id]
    for w in runtime.workers:
        for t in w.tasks.values():
            t.cancel()
        await asyncio.gather(*w.tasks.values(), return_exceptions=True)
