"""Every trigger evaluation has a bounded cost: cheap structural refusals, then a CPU budget.

Timings here are this thread's CPU time (`time.thread_time`), which a loaded machine does not
inflate, against bounds several times the budget: they catch work that is unbounded, not slow.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime

import pytest
from dateutil import rrule as du

from schedules import triggers
from schedules.triggers import TriggerError, TriggerTooExpensive, fire_times, next_fire_after, validate_trigger

# The two rules of issue 13: 48 s and 6.5 s of CPU each before the budget.
SPARSE_COUNT = "FREQ=MINUTELY;INTERVAL=11;COUNT=10000;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO;BYHOUR=23;BYMINUTE=59"
LATTICE_MISS = "FREQ=MINUTELY;INTERVAL=7;BYDAY=MO;BYHOUR=23;BYMINUTE=59"
CPU_BOUND_S = 0.05


def rrule(expr: str, dtstart: str = "2025-01-01T00:00:00", tz: str = "UTC") -> dict:
    return {"kind": "rrule", "expr": expr, "tz": tz, "dtstart": dtstart}


def cpu(fn, *args):
    t0 = time.thread_time()
    try:
        return fn(*args), None, time.thread_time() - t0
    except TriggerError as exc:
        return None, exc, time.thread_time() - t0


@pytest.mark.parametrize("dtstart", ["2999-01-01T00:00:00", "1900-01-01T00:00:00", "2025-06-01T12:34:00"])
@pytest.mark.parametrize(
    "expr",
    [
        SPARSE_COUNT,
        SPARSE_COUNT.replace("COUNT=10000", "COUNT=1000"),
        SPARSE_COUNT.replace("COUNT=10000;", ""),
        "FREQ=HOURLY;BYYEARDAY=366",
        "FREQ=MINUTELY;INTERVAL=11;BYMONTH=2;BYMONTHDAY=28;BYHOUR=23;BYMINUTE=59",
        "FREQ=MINUTELY;INTERVAL=1441;BYDAY=MO",
    ],
)
def test_sparse_sub_daily_rules_are_refused_as_too_expensive_at_once(expr, dtstart):
    _, exc, spent = cpu(validate_trigger, rrule(expr, dtstart))
    assert isinstance(exc, TriggerTooExpensive) and exc.field == "expr" and exc.code == "trigger_too_expensive"
    assert spent < CPU_BOUND_S


def test_a_lattice_that_never_meets_its_weekday_is_refused_at_once():
    _, exc, spent = cpu(validate_trigger, rrule(LATTICE_MISS))
    assert isinstance(exc, TriggerError) and exc.field == "expr" and "never produces" in str(exc)
    assert spent < CPU_BOUND_S


def test_varying_dtstart_does_not_defeat_the_cache():
    """The structural refusal depends on the expression alone and is remembered by it."""
    sparse = SPARSE_COUNT.replace("COUNT=10000;", "")
    t0 = time.thread_time()
    for minute in range(200):
        with pytest.raises(TriggerTooExpensive) as info:
            validate_trigger(rrule(sparse, f"2100-01-01T{minute // 60:02d}:{minute % 60:02d}:00"))
        assert "every year" in str(info.value) and info.value.__traceback__.tb_next is not None
    assert time.thread_time() - t0 < CPU_BOUND_S * 4  # 200 refusals, well under 1 ms each
    assert sparse.upper() in triggers._refusals or sparse in triggers._refusals


def test_a_stored_count_rule_keeps_working_past_the_new_limit():
    """COUNT above 1,000 is refused for new triggers, not for ones stored when 10,000 was allowed."""
    stored = rrule("FREQ=MINUTELY;COUNT=5000")
    with pytest.raises(TriggerTooExpensive):
        validate_trigger(stored)
    assert validate_trigger(stored, stored=True)["expr"] == "FREQ=MINUTELY;COUNT=5000"
    fires = fire_times(stored, datetime(2025, 1, 4, 11, 18, tzinfo=UTC), 5)
    assert fires == [datetime(2025, 1, 4, 11, 19, tzinfo=UTC)]  # the 5,000th minute from dtstart


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        # Sub-daily rules scan one matching day at a time: the next day's midnight is not theirs.
        ("FREQ=HOURLY;BYDAY=MO", datetime(2025, 1, 6, 23, 0), datetime(2025, 1, 13, 0, 0)),
        ("FREQ=HOURLY;BYMONTHDAY=1", datetime(2025, 1, 1, 23, 0), datetime(2025, 2, 1, 0, 0)),
        ("FREQ=MINUTELY;INTERVAL=30;BYDAY=FR", datetime(2025, 1, 3, 23, 30), datetime(2025, 1, 10, 0, 0)),
        ("FREQ=HOURLY;BYDAY=MO,TU", datetime(2025, 1, 6, 23, 0), datetime(2025, 1, 7, 0, 0)),
    ],
)
def test_the_day_after_a_matching_day_starts_at_its_own_midnight(expr, after, expected):
    trigger = validate_trigger(rrule(expr))
    assert next_fire_after(trigger, after.replace(tzinfo=UTC)) == expected.replace(tzinfo=UTC)


def test_sparse_rules_that_are_not_sub_daily_still_evaluate():
    trigger = validate_trigger(rrule("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO"))
    assert fire_times(trigger, datetime(2025, 1, 1, tzinfo=UTC), 2) == [
        datetime(2044, 2, 29, tzinfo=UTC),
        datetime(2072, 2, 29, tzinfo=UTC),
    ]
    # Friday the 13th, hourly: matching days every year, so it is accepted and cheap.
    trigger = validate_trigger(rrule("FREQ=HOURLY;BYMONTHDAY=13;BYDAY=FR;BYHOUR=9"))
    assert next_fire_after(trigger, datetime(2025, 1, 1, tzinfo=UTC)) == datetime(2025, 6, 13, 9, tzinfo=UTC)


def test_a_count_rule_finds_its_end_without_listing_it():
    trigger = validate_trigger(rrule("FREQ=MINUTELY;COUNT=1000"))
    assert fire_times(trigger, datetime(2025, 1, 1, 16, 38, tzinfo=UTC), 5) == [
        datetime(2025, 1, 1, 16, 39, tzinfo=UTC)
    ]


def test_the_budget_stops_a_search_that_runs_long(monkeypatch):
    """A rule no structural check catches still stops at the budget instead of running on."""
    trigger = validate_trigger(
        rrule("FREQ=DAILY;INTERVAL=25;BYMONTH=1,6;BYMONTHDAY=15,22;BYDAY=FR,MO", "2007-02-17T08:22:00")
    )
    after = datetime(2008, 1, 1, tzinfo=UTC)
    assert next_fire_after(trigger, after) == datetime(2142, 1, 15, 8, 22, tzinfo=UTC)  # 134 years on
    monkeypatch.setattr(triggers, "EVALUATION_MAX_WINDOWS", 3)
    with pytest.raises(TriggerTooExpensive) as info:
        next_fire_after(trigger, after)
    assert info.value.field == "expr"


FREQS = ["YEARLY", "MONTHLY", "WEEKLY", "DAILY", "HOURLY", "MINUTELY"]


def random_sparse_rule(rnd: random.Random) -> str:
    """Rules whose day parts and INTERVAL make matches rare: the shapes that used to run for seconds."""
    freq = rnd.choice(FREQS)
    parts = [f"FREQ={freq}", f"INTERVAL={rnd.choice([1, 1, 2, 7, 11, 13, 25, 59, 61, 97, 1439])}"]
    if rnd.random() < 0.6:
        parts.append("BYMONTH=" + ",".join(map(str, sorted(rnd.sample(range(1, 13), rnd.randint(1, 2))))))
    if rnd.random() < 0.5 and freq != "WEEKLY":
        parts.append("BYMONTHDAY=" + ",".join(map(str, sorted(rnd.sample([*range(1, 32), -1], rnd.randint(1, 2))))))
    if rnd.random() < 0.6:
        parts.append("BYDAY=" + ",".join(rnd.sample(["MO", "TU", "WE", "TH", "FR", "SA", "SU"], rnd.randint(1, 2))))
    if rnd.random() < 0.4:
        parts.append(f"BYHOUR={rnd.randrange(24)}")
    if rnd.random() < 0.4:
        parts.append(f"BYMINUTE={rnd.randrange(60)}")
    if rnd.random() < 0.2:
        parts.append(f"COUNT={rnd.randint(1, 1000)}")
    return ";".join(parts)


def test_random_sparse_rules_are_refused_or_evaluated_within_the_budget_and_exactly():
    rnd = random.Random(13)
    outcomes = {"evaluated": 0, "too_expensive": 0, "refused": 0}
    after = datetime(2030, 1, 1, tzinfo=UTC)
    for _ in range(200):
        expr = random_sparse_rule(rnd)
        start = datetime(rnd.randint(1950, 2030), rnd.randint(1, 12), rnd.randint(1, 28), rnd.randrange(24))
        trigger, exc, spent = cpu(validate_trigger, rrule(expr, start.isoformat()))
        assert spent < 4 * triggers.EVALUATION_BUDGET_S, (expr, start, spent)  # room for a GC pass
        if exc is not None:
            outcomes["too_expensive" if isinstance(exc, TriggerTooExpensive) else "refused"] += 1
            continue
        fires, exc, spent = cpu(fire_times, trigger, after, 60)
        assert spent < 60 * 0.3, (expr, start, spent)  # each next fire within the fire-time budget
        if exc is not None:
            assert isinstance(exc, TriggerTooExpensive), (expr, exc)
            outcomes["too_expensive"] += 1
            continue
        outcomes["evaluated"] += 1
        # The same occurrences dateutil finds by brute force, 60 of them or up to the year 2300.
        rule = du.rrulestr(trigger["expr"] + ";WKST=MO", dtstart=start)
        expected = []
        for slot in rule.xafter(after.replace(tzinfo=None), count=60):
            if slot.year >= 2300:
                break
            expected.append(slot.replace(tzinfo=UTC))
        assert fires[: len(expected)] == expected, (expr, start)
        assert len(fires) >= len(expected)
    assert all(outcomes.values()), outcomes  # the corpus exercises every path
