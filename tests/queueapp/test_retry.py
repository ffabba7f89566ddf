"""The retry policy that the worker and the reaper share (`queueapp.retry`)."""

from __future__ import annotations

import pytest

from queueapp import retry
from queueapp.retry import Cause, Next


def after(cause: Cause, attempt: int, *, tries_base: int = 0, max_tries: int = 3, cancel: bool = False) -> Next:
    return retry.after_attempt(
        cause=cause,
        attempt=attempt,
        tries_base=tries_base,
        max_tries=max_tries,
        backoff_base_s=2.0,
        cancel_requested=cancel,
    )


def test_after_attempt__an_error_with_tries_left_retries_after_the_backoff():
    nxt = after(Cause.ERROR, 2)
    assert (nxt.move, nxt.kind) == ("retry_later", "retry_scheduled")
    assert 2.0 <= nxt.delay_s <= 6.0  # 2 s doubled once, jittered 0.5x to 1.5x


@pytest.mark.parametrize(("cause", "kind"), [(Cause.INTERRUPTED, "requeued"), (Cause.LOST, "worker_lost")])
def test_after_attempt__a_cut_short_attempt_with_tries_left_is_given_again_at_once(cause, kind):
    assert after(cause, 1) == Next("requeue", kind, 0.0)


@pytest.mark.parametrize("cause", list(Cause))
def test_after_attempt__no_tries_left_fails(cause):
    assert after(cause, 3) == Next("fail", "failed")


def test_after_attempt__tries_count_from_the_runs_base():
    assert after(Cause.ERROR, 4, tries_base=3).move == "retry_later"
    assert after(Cause.LOST, 6, tries_base=3).move == "fail"


@pytest.mark.parametrize("cause", list(Cause))
def test_after_attempt__a_cancel_request_wins_over_tries_left_and_none(cause):
    assert after(cause, 1, cancel=True) == after(cause, 3, cancel=True) == Next("cancel_running", "cancelled")


def test_backoff_s__doubles_per_attempt_and_stops_at_the_cap():
    assert all(1.0 <= retry.backoff_s(2.0, 1) <= 3.0 for _ in range(50))
    assert all(4.0 <= retry.backoff_s(2.0, 3) <= 12.0 for _ in range(50))
    assert all(retry.backoff_s(2.0, 40) <= 1.5 * retry.MAX_BACKOFF_S for _ in range(50))
