"""The retry policy: what follows an attempt that did not succeed, for the worker and the reaper alike.

A job has `max_tries` attempts per run (a client's retry starts a new run, from `tries_base`).
An attempt that ends without a result leads to one of:

- `cancel_running`, when someone asked to cancel the job while it ran;
- another attempt while the run has tries left: after an exponential backoff when the body
  failed (it raised or timed out), at once when the attempt was cut short under it (its worker
  stopped, or died and the reaper found the job);
- `fail` when it has none.

Two endings are not this policy's to weigh: a result that is not JSON, and a function this
worker does not have, fail at once (`queueapp.worker`), since running again would not help.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

#: The longest wait between two attempts, seconds.
MAX_BACKOFF_S = 3600.0


class Cause(StrEnum):
    """Why an attempt ended without a result."""

    #: The job's body raised or timed out.
    ERROR = "error"
    #: The worker stopped (SIGTERM past the grace period) while the attempt ran.
    INTERRUPTED = "interrupted"
    #: The reaper found the job running nowhere: its worker died, or no longer has the attempt.
    LOST = "lost"


#: The event kind of an attempt ended as `cancel_running` (the worker's finish also records an end
#: without a result as one when a cancel was asked for: `transitions.finish_move`).
CANCEL_KIND = "cancelled"
#: The event kind of an attempt given again at once, by cause.
_REQUEUE_KIND = {Cause.INTERRUPTED: "requeued", Cause.LOST: "worker_lost"}


@dataclass(frozen=True)
class Next:
    """What follows: a move of `transitions.MOVES`, the event's kind, and when the next attempt is due."""

    move: str
    kind: str
    #: Seconds until the next attempt is due; None when there is no next attempt.
    delay_s: float | None = None


def tries_left(attempts: int, tries_base: int, max_tries: int) -> bool:
    """May a job that has made `attempts` attempts (`tries_base` of them before this run) try again?"""
    return attempts - tries_base < max_tries


def backoff_s(base_s: float, attempt: int) -> float:
    """Exponential backoff with jitter (0.5x to 1.5x), capped at MAX_BACKOFF_S."""
    return min(base_s * 2.0 ** max(attempt - 1, 0), MAX_BACKOFF_S) * random.uniform(0.5, 1.5)


def after_attempt(
    *,
    cause: Cause,
    attempt: int,
    tries_base: int,
    max_tries: int,
    backoff_base_s: float,
    cancel_requested: bool = False,
) -> Next:
    """Decide what follows attempt `attempt` of a job, which ended without a result for `cause`.

    :param backoff_base_s: the job's `retry_backoff_s`.
    :param cancel_requested: someone asked to cancel the job while the attempt ran.
    """
    if cancel_requested:
        return Next("cancel_running", CANCEL_KIND)
    if not tries_left(attempt, tries_base, max_tries):
        return Next("fail", "failed")
    if cause == Cause.ERROR:
        return Next("retry_later", "retry_scheduled", backoff_s(backoff_base_s, attempt - tries_base))
    return Next("requeue", _REQUEUE_KIND[cause], 0.0)
