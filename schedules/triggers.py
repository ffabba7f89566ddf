"""When does a schedule trigger fire? One pure module, no Django, no I/O.

A trigger is a small dict, either::

    {"kind": "cron", "expr": "0 8 * * MON", "tz": "Europe/Stockholm"}
    {"kind": "rrule", "expr": "FREQ=MONTHLY;BYDAY=+3TU", "tz": "Europe/Stockholm",
     "dtstart": "2025-03-16T02:30:00"}

How fire times are computed, and why:

* Recurrence maths happens on *naive local wall-clock time* of the trigger's IANA
  zone. Cron and RRULE are both defined in wall time ("08:00 every Monday"), and
  dateutil is exact and fast on naive datetimes but has surprising DST behaviour
  on aware ones (and croniter, on aware datetimes, fires a repeated local time
  twice on a fall-back day).
* Each local slot is then mapped to one UTC instant by :func:`_wall_to_utc`:
  a wall time that occurs twice (fall back) fires once, at its *first*
  occurrence; a wall time that does not exist (spring forward) fires at the
  first instant after the gap (Stockholm 02:30 on 2025-03-30 -> 03:00 local =
  01:00Z, not dateutil's ``resolve_imaginary`` 03:30). That mapping is monotone,
  so "strictly after ``after``" is simply "skip slots that map to <= after";
  several slots inside one gap collapse into a single fire.
* Nothing walks minute by minute: cron is matched against its expanded field
  sets (months skipped whole, then days, then the sorted hours and minutes),
  and RRULE evaluation is re-anchored close to ``after`` (:func:`_rebased`)
  instead of being replayed from ``dtstart`` on every call.
* Cron is evaluated here rather than by croniter: this module already expands
  every field to a set of numbers for its own validation, and re-parsing the
  expression in croniter cost about 140 us per new expression, which made a
  scheduler batch of 1,000 distinct schedules 2.5 times slower. The tests keep
  croniter as an oracle on naive wall time.

Design choices (documented here because callers and users see them):

* cron: exactly five fields (minute hour day-of-month month day-of-week), with
  numbers, JAN-DEC / SUN-SAT names, ``*``, ranges ``a-b``, lists and steps
  ``*/n`` / ``a-b/n``. ``@hourly @daily @midnight @weekly @monthly @yearly
  @annually`` are accepted and expanded to five fields in the normalised expr.
  Refused: seconds/year fields, ``@reboot``, the non-standard ``L W # ? H``
  extensions, reversed ranges (``50-10``) and the ``a/n`` shorthand (it means
  different things in different crons). An equal range ``5-5`` means 5 (croniter
  alone would read it as the whole field). Day-of-month and day-of-week combine
  like Vixie cron: OR when both are restricted, AND when either field starts
  with ``*``.
* rrule: ``expr`` is a single RFC 5545 RRULE value; a leading ``RRULE:`` is
  stripped, anything mentioning DTSTART (use the ``dtstart`` key) and any
  RDATE/EXDATE/EXRULE line is refused. ``dtstart`` is naive ISO wall time in
  ``tz`` and is the *anchor* of the rule (dateutil semantics: it is an
  occurrence only if it matches the rule). UNTIL must be a date-time: a UTC
  ``...Z`` value is compared as an instant, a floating value is read as wall
  time in ``tz``; date-only UNTIL and COUNT together with UNTIL are refused.
  Rules that could fire more often than once a minute (SECONDLY, more than one
  BYSECOND value) and rules that never produce an occurrence are refused.
* cost: every rrule evaluation (the first occurrence at validation, each next
  fire, the end of a COUNT rule) runs under a budget of
  ``EVALUATION_BUDGET_S`` of this thread's CPU time and ``EVALUATION_MAX_WINDOWS``
  scan windows; past it :class:`TriggerTooExpensive` is raised (the API answers
  400 ``trigger_too_expensive``, the scheduler quarantines). Cheap structural
  refusals come first and are cached per expression, so varying ``dtstart``
  cannot make them cost more: an HOURLY or MINUTELY rule must match some day in
  every calendar year (``every minute of Monday 29 February`` is a YEARLY
  rule), and a sub-daily INTERVAL whose lattice never meets the allowed
  weekday and time is refused outright. COUNT rules are never materialised:
  only their last occurrence is found, by the same budgeted scan. Sub-daily
  rules skip whole non-matching days with a cheap DAILY probe instead of
  letting dateutil step through them.
* tz: an IANA name loadable by :mod:`zoneinfo`. Fixed offsets (``UTC+3``,
  ``+03:00``, ``Etc/GMT-3``, ``EST``...) are refused because they cannot follow
  daylight-saving changes; ``UTC``, ``Etc/UTC`` and ``GMT`` are fine.
"""

from __future__ import annotations

import contextvars
import functools
import itertools
import math
import re
import threading
import time
import zoneinfo
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

from dateutil import rrule as du

__all__ = [
    "TriggerError",
    "TriggerTooExpensive",
    "describe",
    "fire_times",
    "latest_fire_at_or_before",
    "next_fire_after",
    "use_pinned_tzdata",
    "validate_trigger",
]


CRON_EXPR_MAX_LEN = 256
RRULE_EXPR_MAX_LEN = 1024
TZ_NAME_MAX_LEN = 64
RRULE_MAX_COUNT = 1000  # for new and changed triggers
RRULE_MAX_STORED_COUNT = 10_000  # what triggers stored before the cost rules may still hold
RRULE_MAX_INTERVAL = 10_000
CATCH_UP_EXACT_LIMIT = 1000
# The work one evaluation may do: CPU time of this thread (so a loaded machine does not turn a
# cheap rule into a refused one) and scan windows (so the verdict does not depend on speed alone).
EVALUATION_BUDGET_S = 0.025  # validating a new or changed trigger
FIRE_BUDGET_S = 0.25  # evaluating a stored one: ten times the room, so a slower moment never quarantines
EVALUATION_MAX_WINDOWS = 4000
# An HOURLY/MINUTELY rule must match some day in each of this many consecutive years (a full
# cycle of weekdays against dates), else it is a yearly rule written at a sub-daily frequency.
SUBDAILY_COVERAGE_YEARS = 28

# Slots skipped inside one call can only come from a repeated (fall-back) hour,
# i.e. a few hundred at most; the cap turns a logic error into an exception
# instead of a hang.
_MAX_SKIPPED_SLOTS = 100_000


class TriggerError(ValueError):
    """A trigger (or an argument about one) is invalid.

    ``field`` names the offending trigger key ("kind", "expr", "tz", "dtstart")
    so API layers can attach the message to the right input; it is ``None``
    when the problem is not one key (e.g. a naive ``after``).
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class TriggerTooExpensive(TriggerError):
    """Evaluating the trigger would cost more than one evaluation's budget."""

    code = "trigger_too_expensive"

    def __init__(self, message: str, field: str | None = "expr") -> None:
        super().__init__(message, field)


class _Budget:
    """The work left to one evaluation: CPU seconds of this thread and scan windows.

    The CPU clock starts at the first scan window: reading it is a system call (about 1 us, more
    on a loaded VM), and a cron evaluation, which never scans, would pay it on every next fire.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline: float | None = None
        self.windows = EVALUATION_MAX_WINDOWS

    def spend(self) -> None:
        self.windows -= 1
        now = time.thread_time()
        if self.deadline is None:
            self.deadline = now + self.seconds
        if self.windows < 0 or now > self.deadline:
            raise TriggerTooExpensive(
                f"the rule is too expensive to evaluate: finding one occurrence takes more than "
                f"{EVALUATION_MAX_WINDOWS} scan windows or {self.seconds * 1000:.0f} ms; "
                "use a coarser FREQ (e.g. YEARLY for a few dates a year) or fewer BY parts"
            )


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("trigger_budget", default=None)


class _evaluation:
    """Run the enclosed code under one budget of `seconds` (nested uses share the outermost one)."""

    def __init__(self, seconds: float = FIRE_BUDGET_S) -> None:
        self.seconds = seconds

    def __enter__(self) -> None:
        self._token = _budget.set(_Budget(self.seconds)) if _budget.get() is None else None

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _budget.reset(self._token)


def _spend() -> None:
    budget = _budget.get()
    if budget is None:  # called outside a public entry point (tests of internals): a fresh budget
        raise RuntimeError("rrule scanning must run inside _evaluation()")
    budget.spend()


def use_pinned_tzdata() -> None:
    """Read zone data only from the pinned ``tzdata`` package, never the OS copy.

    Fire times must not change when the host's zoneinfo is older or newer than
    the version the project pins. ``hq/settings.py`` makes the same
    ``reset_tzpath`` call at start-up, before any zone is loaded (``hq`` imports
    none of the apps, so it cannot call this); tests call this, which also drops
    zones cached from the previous search path.
    """
    zoneinfo.reset_tzpath(to=[])
    zoneinfo.ZoneInfo.clear_cache()
    for cached in (_load_zone, _wall_to_utc, _local_wall):
        cached.cache_clear()


# --------------------------------------------------------------------------- #
# Public API
# --------------------------------------------------------------------------- #


def validate_trigger(trigger: Mapping[str, Any], *, stored: bool = False) -> dict[str, Any]:
    """Check ``trigger`` and return a normalised copy.

    The copy has ``kind``, ``expr`` and ``tz`` (plus ``dtstart`` for an rrule
    that has one) and nothing else. An rrule without ``dtstart`` is valid here
    because services fill it in at creation time, but it cannot be evaluated.
    ``stored`` re-checks a trigger saved earlier (a fire, a resume): it gets the
    fire-time budget and the COUNT limit that was in force when it was saved.
    """
    with _evaluation(FIRE_BUDGET_S if stored else EVALUATION_BUDGET_S):
        return _validate(trigger, stored)


def _validate(trigger: Mapping[str, Any], stored: bool) -> dict[str, Any]:
    kind, expr, tz = _required_fields(trigger)
    _load_zone(tz)
    if kind == "cron":
        return {"kind": "cron", "expr": _parse_cron(expr).normalised, "tz": tz}
    spec = _parse_rrule(expr)
    if not stored and spec.count is not None and spec.count > RRULE_MAX_COUNT:
        raise TriggerTooExpensive(
            f"COUNT may be at most {RRULE_MAX_COUNT}: finding where a COUNT rule ends costs work per "
            "occurrence; bound a longer rule with UNTIL instead"
        )
    result: dict[str, Any] = {"kind": "rrule", "expr": spec.normalised, "tz": tz}
    dtstart = _parse_dtstart(trigger.get("dtstart"))
    if dtstart is not None:
        _check_rrule_fires(_compile_rrule(spec.normalised, dtstart), _load_zone(tz))
        result["dtstart"] = dtstart.isoformat(timespec="seconds")
    return result


def next_fire_after(trigger: Mapping[str, Any], after: datetime) -> datetime | None:
    """The first fire strictly after ``after``, as an aware UTC datetime.

    ``None`` when an rrule is exhausted (COUNT/UNTIL) or the next fire would lie
    beyond what :class:`datetime` can represent.
    """
    return _plan(trigger).next_after(_as_utc(after, "after"))


def fire_times(trigger: Mapping[str, Any], after: datetime, count: int) -> list[datetime]:
    """The next ``count`` fires after ``after`` (fewer if the rule runs out)."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise TriggerError("count must be a non-negative integer")
    plan = _plan(trigger)
    fires: list[datetime] = []
    cursor = _as_utc(after, "after")
    while len(fires) < count:
        nxt = plan.next_after(cursor)
        if nxt is None:
            break
        fires.append(nxt)
        cursor = nxt
    return fires


def latest_fire_at_or_before(
    trigger: Mapping[str, Any], before: datetime, not_before: datetime
) -> tuple[datetime | None, int]:
    """Catch-up after downtime: the latest fire ``s`` with ``not_before < s <= before``.

    Returns ``(s, skipped)`` where ``skipped`` is the number of other fires in
    that window (fires in the window minus one), or ``(None, 0)`` if there are
    none. Work is bounded: fires are counted exactly up to
    ``CATCH_UP_EXACT_LIMIT``; beyond that ``skipped`` is an *estimate*,
    extrapolated linearly from the density of the first ``CATCH_UP_EXACT_LIMIT``
    fires (exact for evenly spaced schedules such as every minute, and always at
    least ``CATCH_UP_EXACT_LIMIT``).
    """
    plan = _plan(trigger)
    upper = _as_utc(before, "before")
    lower = _as_utc(not_before, "not_before")
    if upper <= lower:
        return None, 0
    latest = plan.latest_in(lower, upper)
    if latest is None:
        return None, 0
    return latest, plan.count_in(lower, latest) - 1


# --------------------------------------------------------------------------- #
# Trigger fields
# --------------------------------------------------------------------------- #


def _required_fields(trigger: Mapping[str, Any]) -> tuple[str, str, str]:
    """Pull kind/expr/tz out of ``trigger`` with a precise error for each gap."""
    if not isinstance(trigger, Mapping):
        raise TriggerError("trigger must be an object with kind, expr and tz")
    kind = trigger.get("kind")
    if kind is None:
        raise TriggerError("kind is required ('cron' or 'rrule')", "kind")
    if not isinstance(kind, str) or kind.strip().lower() not in ("cron", "rrule"):
        raise TriggerError(f"unknown trigger kind {kind!r}; expected 'cron' or 'rrule'", "kind")
    kind = kind.strip().lower()
    expr = trigger.get("expr")
    if expr is None:
        raise TriggerError("expr is required", "expr")
    if not isinstance(expr, str):
        raise TriggerError(f"expr must be a string, not {type(expr).__name__}", "expr")
    if kind == "cron" and trigger.get("dtstart") is not None:
        raise TriggerError("dtstart only applies to rrule triggers", "dtstart")
    limit = CRON_EXPR_MAX_LEN if kind == "cron" else RRULE_EXPR_MAX_LEN
    if len(expr) > limit:
        raise TriggerError(f"expr is too long ({len(expr)} characters, at most {limit})", "expr")
    tz = trigger.get("tz")
    if tz is None:
        raise TriggerError("tz is required (an IANA time zone such as 'Europe/Stockholm')", "tz")
    if not isinstance(tz, str):
        raise TriggerError(f"tz must be a string, not {type(tz).__name__}", "tz")
    return kind, expr, tz


def _as_utc(value: datetime, name: str) -> datetime:
    """Aware datetime -> the same instant in UTC; naive datetimes are ambiguous."""
    if not isinstance(value, datetime):
        raise TriggerError(f"{name} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise TriggerError(f"{name} must be timezone-aware; a naive datetime has no single instant")
    return value.astimezone(UTC)


# --------------------------------------------------------------------------- #
# Time zones
# --------------------------------------------------------------------------- #

_TZ_NAME = re.compile(r"[A-Za-z0-9_+\-]+(?:/[A-Za-z0-9_+\-]+)*\Z")
# UTC+3, +03:00, GMT-3, Etc/GMT+5, UTC-05:00, GMT0, Etc/GMT-0 ... : all fixed offsets.
_FIXED_OFFSET = re.compile(r"^(?:Etc/)?(?:UTC|GMT|UCT)?[+-]|^(?:Etc/)?(?:UTC|GMT|UCT)[0-9]|[+-][0-9]|[0-9]:[0-9]", re.I)
# Legacy IANA zones that are a bare fixed offset although they look like places.
_FIXED_ABBREVIATIONS = frozenset({"EST", "MST", "HST"})


@functools.lru_cache(maxsize=1024)
def _load_zone(name: str) -> zoneinfo.ZoneInfo:
    """Load an IANA zone, refusing names that are paths or fixed offsets."""
    if not name or len(name) > TZ_NAME_MAX_LEN:
        raise TriggerError("tz must be an IANA time zone name such as 'Europe/Stockholm'", "tz")
    if _FIXED_OFFSET.search(name) or name in _FIXED_ABBREVIATIONS:
        raise TriggerError(
            f"tz {name!r} is a fixed UTC offset; fixed offsets cannot follow daylight-saving "
            "changes, so use a location such as 'Europe/Stockholm' (or 'UTC')",
            "tz",
        )
    if ".." in name or name.startswith("/") or not _TZ_NAME.match(name):
        raise TriggerError(f"tz {name!r} is not a valid IANA time zone name", "tz")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise TriggerError(f"unknown time zone {name!r}", "tz") from exc


@functools.lru_cache(maxsize=8192)  # pure; schedules due together share their slots and zones
def _wall_to_utc(wall: datetime, zone: zoneinfo.ZoneInfo) -> datetime:
    """Map a naive local wall time to the single UTC instant it fires at.

    Existing and repeated wall times use ``fold=0``, the first occurrence. A
    wall time inside a spring-forward gap fires at the end of the gap: the
    transition instant itself, found by bisecting (whole seconds) between the
    two PEP 495 readings of the time, which bracket it.
    """
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # In a gap fold=0 applies the pre-transition offset (the later instant) and
    # fold=1 the post-transition offset (the earlier one): the transition T lies
    # in (earlier, later], and an instant's wall time is past ``wall`` iff >= T.
    other = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    lo = math.floor(min(first, other).timestamp())
    hi = math.ceil(max(first, other).timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, zone).replace(tzinfo=None) > wall:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


@functools.lru_cache(maxsize=1024)  # pure; a scheduler batch asks it for one slot in a few zones
def _local_wall(instant: datetime, zone: zoneinfo.ZoneInfo) -> datetime:
    """The naive wall-clock reading of ``instant`` in ``zone`` (fold dropped)."""
    return instant.astimezone(zone).replace(tzinfo=None, fold=0)


# --------------------------------------------------------------------------- #
# Evaluation plan: local slots + wall->UTC mapping
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class _Plan:
    """A validated trigger ready to evaluate.

    ``slots_after(wall)`` yields the rule's naive local slots strictly after
    ``wall`` in increasing order; everything about DST lives in this class.
    """

    zone: zoneinfo.ZoneInfo
    slots_after: Callable[[datetime], Iterator[datetime]]
    until: datetime | None = None  # UTC; fires after it do not happen

    def next_after(self, after: datetime) -> datetime | None:
        """The first fire strictly after ``after``, found within one evaluation budget."""
        if self.until is not None and after >= self.until:
            return None
        with _evaluation():
            return self._next_after(after)

    def _next_after(self, after: datetime) -> datetime | None:
        try:
            wall = _local_wall(after, self.zone)
            # Slots at or before ``wall`` map to instants <= after because the
            # mapping is monotone; later slots can still map <= after when
            # ``after`` is in the second pass of a repeated hour.
            for skipped, slot in enumerate(self.slots_after(wall)):
                fire = _wall_to_utc(slot, self.zone)
                if self.until is not None and fire > self.until:
                    return None
                if fire > after:
                    return fire
                if skipped > _MAX_SKIPPED_SLOTS:
                    raise RuntimeError(f"no fire found after {after} within {_MAX_SKIPPED_SLOTS} slots")
        except TriggerError:
            raise
        except (OverflowError, ValueError):  # the next fire would be past year 9999
            return None
        return None

    def latest_in(self, lower: datetime, upper: datetime) -> datetime | None:
        """Latest fire in (lower, upper], scanning forward over a growing trailing window."""
        span = timedelta(minutes=2)
        while True:
            start = max(lower, upper - span)
            latest = None
            cursor = start
            while (nxt := self.next_after(cursor)) is not None and nxt <= upper:
                latest = cursor = nxt
            if latest is not None or start == lower:
                return latest
            span *= 2

    def count_in(self, lower: datetime, last: datetime) -> int:
        """Number of fires in (lower, last] where ``last`` is a fire; estimated past the limit."""
        cursor = lower
        for seen in range(1, CATCH_UP_EXACT_LIMIT + 1):
            nxt = self.next_after(cursor)
            if nxt is None or nxt >= last:
                return seen
            cursor = nxt
        density = CATCH_UP_EXACT_LIMIT / ((cursor - lower) / timedelta(seconds=1))
        estimate = round(density * ((last - lower) / timedelta(seconds=1)))
        return max(estimate, CATCH_UP_EXACT_LIMIT + 1)


def _plan(trigger: Mapping[str, Any]) -> _Plan:
    kind, expr, tz = _required_fields(trigger)
    zone = _load_zone(tz)
    if kind == "cron":
        cron = _parse_cron(expr)
        return _Plan(zone, cron.slots_after)
    spec = _parse_rrule(expr)
    dtstart = _parse_dtstart(trigger.get("dtstart"))
    if dtstart is None:
        raise TriggerError("an rrule trigger needs dtstart to be evaluated", "dtstart")
    with _evaluation():
        compiled = _compile_rrule(spec.normalised, dtstart)
    until = _check_rrule_fires(compiled, zone)
    return _Plan(zone, compiled.slots_after, until)


# --------------------------------------------------------------------------- #
# Cron
# --------------------------------------------------------------------------- #

_CRON_MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_CRON_CHARS = re.compile(r"[0-9A-Za-z*,/\-#? \t]+\Z")
_CRON_TOKEN = re.compile(
    r"(?:(?P<star>\*)|(?P<a>[0-9]{1,4}|[A-Z]+)(?:-(?P<b>[0-9]{1,4}|[A-Z]+))?)(?:/(?P<step>[0-9]{1,4}))?\Z"
)
_CRON_EXTENSION = re.compile(r"L|LW|W|H|R|[0-9]+[LW]|[LW][0-9]+|L-[0-9]+|H\(.*|R\(.*")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


@dataclass(frozen=True, eq=False)  # five constants, hashed by identity (a cache key)
class _CronField:
    label: str
    low: int
    high: int
    names: Mapping[str, int]

    @property
    def size(self) -> int:
        return 7 if self.label == "day-of-week" else self.high - self.low + 1


_CRON_FIELDS = (
    _CronField("minute", 0, 59, {}),
    _CronField("hour", 0, 23, {}),
    _CronField("day-of-month", 1, 31, {}),
    _CronField("month", 1, 12, {name: i for i, name in enumerate(_MONTHS, start=1)}),
    _CronField("day-of-week", 0, 7, {name: i for i, name in enumerate(_WEEKDAYS)}),
)


_ONE_DAY = timedelta(days=1)
_LONGEST_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February in a leap year


@dataclass(frozen=True)
class _Cron:
    """A parsed cron expression: each field expanded to its numbers.

    ``day_or`` carries the Vixie day-field rule: a day matches when its day of
    month *or* its weekday does if both fields are restricted, and when both do
    otherwise (an unrestricted field holds every value).
    """

    normalised: str
    day_or: bool
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday

    def _day_matches(self, day: date) -> bool:
        in_month = day.day in self.days
        in_week = day.isoweekday() % 7 in self.weekdays
        return (in_month or in_week) if self.day_or else (in_month and in_week)

    def slots_after(self, wall: datetime) -> Iterator[datetime]:
        """Naive wall times matching the expression, strictly after ``wall``, in order.

        Raises OverflowError or ValueError past year 9999. Always finds a next slot: the
        parser refuses expressions that never match (every weekday meets every
        day of every month, Feb 29 included, within 28 years).
        """
        start = wall.replace(second=0, microsecond=0) + timedelta(minutes=1)
        day, from_hour, from_minute = start.date(), start.hour, start.minute
        while True:
            if day.month not in self.months:
                month = day.month % 12 + 1
                day = date(day.year + (month == 1), month, 1)
                from_hour = from_minute = 0
                continue
            if self._day_matches(day):
                for hour in self.hours:
                    if hour < from_hour:
                        continue
                    for minute in self.minutes:
                        if hour == from_hour and minute < from_minute:
                            continue
                        yield datetime(day.year, day.month, day.day, hour, minute)
            day += _ONE_DAY
            from_hour = from_minute = 0


@functools.lru_cache(maxsize=1024)
def _parse_cron(expr: str) -> _Cron:
    text = expr.strip()
    if not text:
        raise TriggerError("cron expression is empty", "expr")
    if text.startswith("@"):
        text = _expand_cron_macro(text)
    if not _CRON_CHARS.match(text):
        bad = next(ch for ch in text if not _CRON_CHARS.match(ch))
        raise TriggerError(f"cron expression contains unsupported character {bad!r}", "expr")
    fields = text.upper().split()
    if len(fields) != 5:
        raise TriggerError(
            f"cron expression needs exactly 5 fields (minute hour day-of-month month day-of-week), "
            f"got {len(fields)}; seconds and year fields are not supported",
            "expr",
        )
    minute, hour, day, month, weekday = _CRON_FIELDS
    # Vixie cron: a day field starting with '*' is unrestricted, and the two day
    # fields are OR-ed only when both are restricted.
    day_or = not (fields[2].startswith("*") or fields[4].startswith("*"))
    cron = _Cron(
        " ".join(fields),
        day_or,
        _expand_cron_field(fields[0], minute),
        _expand_cron_field(fields[1], hour),
        _cron_field_set(fields[2], day),
        _cron_field_set(fields[3], month),
        _cron_field_set(fields[4], weekday),
    )
    if not day_or and not any(d <= _LONGEST_MONTH[m - 1] for m in cron.months for d in cron.days):
        raise TriggerError(f"cron expression {cron.normalised!r} never matches a real date", "expr")
    return cron


def _expand_cron_macro(text: str) -> str:
    macro = text.lower()
    if macro in _CRON_MACROS:
        return _CRON_MACROS[macro]
    if macro == "@reboot":
        raise TriggerError("@reboot has no time of day and cannot be scheduled", "expr")
    accepted = ", ".join(sorted(_CRON_MACROS))
    raise TriggerError(f"unknown cron macro {text!r}; accepted: {accepted}", "expr")


@functools.lru_cache(maxsize=4096)
def _expand_cron_field(text: str, field: _CronField) -> tuple[int, ...]:
    """A field's numbers, sorted; cached per text, since most expressions share most fields ("*")."""
    values: set[int] = set()
    for token in text.split(","):
        if not token:
            raise TriggerError(f"cron {field.label} field {text!r} has an empty list item", "expr")
        values |= _expand_cron_token(token, field)
    return tuple(sorted(values))


@functools.lru_cache(maxsize=1024)
def _cron_field_set(text: str, field: _CronField) -> frozenset[int]:
    """A field's numbers as a set: the day and month fields are tested by membership."""
    return frozenset(_expand_cron_field(text, field))


@functools.lru_cache(maxsize=4096)
def _expand_cron_token(token: str, field: _CronField) -> frozenset[int]:
    """A list item's numbers; cached, since expressions that differ mostly share their items."""
    if token.isdigit() and len(token) <= 4:  # a plain number, by far the most common token: no regex
        value = _cron_value(token, field)
        return frozenset((value % 7,) if field.label == "day-of-week" else (value,))
    match = _CRON_TOKEN.match(token)
    if match is None or (match["a"] and match["b"] is None and match["step"]):
        raise TriggerError(_cron_token_problem(token, field), "expr")
    is_dow = field.label == "day-of-week"
    if match["star"]:
        low, high = field.low, field.low + field.size - 1
    else:
        low = _cron_value(match["a"], field)
        high = _cron_value(match["b"], field) if match["b"] else low
        if is_dow and match["b"] and high == 0 and low > 0:
            high = 7  # FRI-SUN: Sunday closes a range as 7
        if low > high:
            raise TriggerError(
                f"cron {field.label} range {token!r} is reversed; wrap-around ranges are not supported, "
                "use a list such as '22-23,0-2'",
                "expr",
            )
    step = int(match["step"]) if match["step"] else 1
    if not 1 <= step <= field.size:
        raise TriggerError(f"cron {field.label} step in {token!r} must be between 1 and {field.size}", "expr")
    values = range(low, high + 1, step)
    return frozenset(v % 7 for v in values) if is_dow else frozenset(values)


def _cron_token_problem(token: str, field: _CronField) -> str:
    if "#" in token or "?" in token or _CRON_EXTENSION.fullmatch(token):
        return (
            f"cron {field.label} field {token!r} uses a non-standard extension (L, W, #, ?, H); "
            "only numbers, names, '*', ranges, lists and steps are supported"
        )
    if re.fullmatch(r"[0-9A-Z]+/[0-9]+", token):
        return (
            f"cron {field.label} field {token!r}: 'start/step' means different things in different crons; "
            f"write a range with a step such as '{token.split('/')[0]}-{field.high}/{token.split('/')[1]}'"
        )
    return f"cron {field.label} field {token!r} is not valid cron syntax"


def _cron_value(raw: str, field: _CronField) -> int:
    if raw.isdigit():
        value = int(raw)
    elif raw in field.names:
        value = field.names[raw]
    elif _CRON_EXTENSION.fullmatch(raw):
        raise TriggerError(_cron_token_problem(raw, field), "expr")
    else:
        raise TriggerError(f"unknown name {raw!r} in cron {field.label} field", "expr")
    if not field.low <= value <= field.high:
        raise TriggerError(
            f"cron {field.label} value {value} is out of range {field.low}-{field.high}",
            "expr",
        )
    return value


# --------------------------------------------------------------------------- #
# RRULE
# --------------------------------------------------------------------------- #

_FREQS = {
    "YEARLY": du.YEARLY,
    "MONTHLY": du.MONTHLY,
    "WEEKLY": du.WEEKLY,
    "DAILY": du.DAILY,
    "HOURLY": du.HOURLY,
    "MINUTELY": du.MINUTELY,
}
_RRULE_PART_ORDER = (
    "FREQ",
    "INTERVAL",
    "COUNT",
    "UNTIL",
    "BYMONTH",
    "BYWEEKNO",
    "BYYEARDAY",
    "BYMONTHDAY",
    "BYDAY",
    "BYHOUR",
    "BYMINUTE",
    "BYSECOND",
    "BYSETPOS",
    "WKST",
)
# name -> (smallest magnitude, largest magnitude, negative values allowed)
_RRULE_INT_LISTS = {
    "BYSECOND": (0, 59, False),
    "BYMINUTE": (0, 59, False),
    "BYHOUR": (0, 23, False),
    "BYMONTHDAY": (1, 31, True),
    "BYYEARDAY": (1, 366, True),
    "BYWEEKNO": (1, 53, True),
    "BYMONTH": (1, 12, False),
    "BYSETPOS": (1, 366, True),
}
_RRULE_VALUE = re.compile(r"[A-Z0-9,+\-]+\Z")
_BYDAY_ITEM = re.compile(r"([+-]?[0-9]{1,2})?(MO|TU|WE|TH|FR|SA|SU)\Z")
_UNTIL_VALUE = re.compile(r"([0-9]{8}T[0-9]{6})(Z?)\Z")
# FREQ units in one 400-year Gregorian cycle, after which weekdays and leap
# days repeat exactly (146097 days is a whole number of weeks).
_UNITS_PER_400_YEARS = {
    du.YEARLY: 400,
    du.MONTHLY: 4800,
    du.WEEKLY: 20871,
    du.DAILY: 146097,
    du.HOURLY: 146097 * 24,
    du.MINUTELY: 146097 * 24 * 60,
}
_PROBE_HORIZON_YEAR = 9990
_FREQ_UNIT = {
    du.WEEKLY: timedelta(weeks=1),
    du.DAILY: timedelta(days=1),
    du.HOURLY: timedelta(hours=1),
    du.MINUTELY: timedelta(minutes=1),
}


@dataclass(frozen=True)
class _RRuleSpec:
    """A syntactically valid RRULE, independent of dtstart and tz."""

    normalised: str
    parts: tuple[tuple[str, str], ...]
    freq: int
    interval: int
    count: int | None
    until: datetime | None
    until_is_utc: bool

    def dateutil_text(self, without: tuple[str, ...] = ("UNTIL",)) -> str:
        """The rule for rrulestr: UNTIL is applied by us in UTC, WKST is pinned.

        dateutil's default WKST is ``calendar.firstweekday()``, process-global
        state; RFC 5545 says MO.
        """
        parts = [f"{k}={v}" for k, v in self.parts if k not in without]
        if "WKST" not in dict(self.parts):
            parts.append("WKST=MO")
        return ";".join(parts)

    def until_utc(self, zone: zoneinfo.ZoneInfo) -> datetime | None:
        if self.until is None:
            return None
        if self.until_is_utc:
            return self.until.replace(tzinfo=UTC)
        return _wall_to_utc(self.until, zone)


@dataclass(frozen=True)
class _CompiledRRule:
    """A dateutil rule bound to its dtstart, plus what we proved about it."""

    spec: _RRuleSpec
    dtstart: datetime
    rule: du.rrule  # without COUNT and UNTIL: the unbounded lattice, safe to re-anchor
    days: _DayFilter | None  # WEEKLY and finer: the day parts, applied here rather than by dateutil
    first: datetime
    last: datetime | None  # COUNT rules: the COUNT-th occurrence

    def slots_after(self, wall: datetime) -> Iterator[datetime]:
        for slot in _scan(self.spec, self.dtstart, self.rule, self.days, wall):
            if self.last is not None and slot > self.last:
                return
            yield slot


def _rrule_error(message: str) -> TriggerError:
    return TriggerError(message, "expr")


def _parse_rrule(expr: str) -> _RRuleSpec:
    """A syntactically and structurally valid rule, or the refusal; both remembered per expression.

    Every check here depends on the expression alone, so a refusal is as cacheable as an answer
    (it is kept as its class, message and field and raised afresh, never as the old exception).
    """
    with _refusals_lock:
        refused = _refusals.get(expr)
    if refused is not None:
        cls, message, field = refused
        raise cls(message, field)
    try:
        return _parse_rrule_cached(expr)
    except TriggerError as exc:
        with _refusals_lock:
            if len(_refusals) >= 1024:
                _refusals.clear()
            _refusals[expr] = (type(exc), exc.message, exc.field)
        raise


_refusals: dict[str, tuple[type[TriggerError], str, str | None]] = {}
_refusals_lock = threading.Lock()


@functools.lru_cache(maxsize=1024)
def _parse_rrule_cached(expr: str) -> _RRuleSpec:
    parts = _split_rrule_parts(_rrule_value(expr))
    freq = _rrule_freq(parts)
    interval = _bounded_int(parts, "INTERVAL", 1, RRULE_MAX_INTERVAL) or 1
    count = _bounded_int(parts, "COUNT", 1, RRULE_MAX_STORED_COUNT)
    until, until_is_utc = _rrule_until(parts)
    if count is not None and until is not None:
        raise _rrule_error("COUNT and UNTIL cannot be used together (RFC 5545)")
    _check_rrule_parts(parts, freq)
    ordered = tuple((name, parts[name]) for name in _RRULE_PART_ORDER if name in parts)
    normalised = ";".join(f"{k}={v}" for k, v in ordered)
    spec = _RRuleSpec(normalised, ordered, freq, interval, count, until, until_is_utc)
    if not _day_filters_satisfiable(spec):
        raise _rrule_error(f"rrule {normalised!r} never produces an occurrence: no date matches its day parts")
    _check_subdaily_coverage(spec)
    return spec


def _rrule_value(expr: str) -> str:
    """The RRULE value of `expr`, upper-cased, without an `RRULE:` prefix."""
    text = expr.strip().upper()
    if not text:
        raise _rrule_error("rrule expression is empty")
    if "DTSTART" in text:
        raise _rrule_error("do not put DTSTART inside expr; pass it as the separate dtstart key")
    if text.startswith("RRULE:"):
        text = text[len("RRULE:") :]
    if any(ch in text for ch in ":\r\n"):
        raise _rrule_error("expr must be a single RRULE value; RDATE, EXDATE, EXRULE and properties are not supported")
    return text


def _check_rrule_parts(parts: Mapping[str, str], freq: int) -> None:
    """Refuse values and combinations of the BY*, WKST and BYSECOND parts that HQ does not run."""
    if "BYSECOND" in parts and "," in parts["BYSECOND"]:
        # With one BYSECOND value every occurrence has the same second, so two
        # distinct occurrences are always at least a minute apart.
        raise _rrule_error("BYSECOND may have only one value: schedules fire at most once a minute")
    for name, (low, high, signed) in _RRULE_INT_LISTS.items():
        if name in parts:
            _check_int_list(name, parts[name], low, high, signed)
    if "BYDAY" in parts:
        _check_byday(parts["BYDAY"], freq, "BYWEEKNO" in parts)
    if "WKST" in parts and parts["WKST"] not in ("MO", "TU", "WE", "TH", "FR", "SA", "SU"):
        raise _rrule_error(f"WKST must be a weekday code such as MO, got {parts['WKST']!r}")
    _check_rfc_combinations(parts, freq)


def _split_rrule_parts(text: str) -> dict[str, str]:
    parts: dict[str, str] = {}
    for raw in text.split(";"):
        if not raw.strip():
            continue
        name, sep, value = (s.strip() for s in raw.partition("="))
        if not sep or not name or not value or not _RRULE_VALUE.match(value):
            raise _rrule_error(f"malformed rrule part {raw.strip()!r}; expected NAME=VALUE")
        if name not in _RRULE_PART_ORDER:
            raise _rrule_error(f"unsupported rrule part {name!r}")
        if name in parts:
            raise _rrule_error(f"rrule part {name} is given twice")
        parts[name] = value
    return parts


def _rrule_freq(parts: Mapping[str, str]) -> int:
    freq = parts.get("FREQ")
    if freq is None:
        raise _rrule_error("rrule needs FREQ, e.g. FREQ=WEEKLY")
    if freq == "SECONDLY":
        raise _rrule_error("FREQ=SECONDLY is not allowed: schedules fire at most once a minute")
    if freq not in _FREQS:
        raise _rrule_error(f"unknown FREQ {freq!r}; expected one of {', '.join(_FREQS)}")
    return _FREQS[freq]


def _bounded_int(parts: Mapping[str, str], name: str, low: int, high: int | None) -> int | None:
    if name not in parts:
        return None
    raw = parts[name]
    if not raw.isdigit() or len(raw) > 9 or not low <= int(raw) <= (high or 10**9):
        bounds = f"between {low} and {high}" if high else f"of at least {low}"
        raise _rrule_error(f"{name} must be an integer {bounds}, got {raw!r}")
    return int(raw)


def _rrule_until(parts: Mapping[str, str]) -> tuple[datetime | None, bool]:
    raw = parts.get("UNTIL")
    if raw is None:
        return None, False
    match = _UNTIL_VALUE.match(raw)
    if match is None:
        raise _rrule_error(
            f"UNTIL must be a date-time such as 20251231T235959Z (UTC) or 20251231T235959 "
            f"(wall time in tz), got {raw!r}"
        )
    try:
        until = datetime.strptime(match[1], "%Y%m%dT%H%M%S")
    except ValueError as exc:
        raise _rrule_error(f"UNTIL {raw!r} is not a real date-time") from exc
    return until, bool(match[2])


def _check_int_list(name: str, raw: str, low: int, high: int, signed: bool) -> None:
    for item in raw.split(","):
        if not re.fullmatch(r"[+-]?[0-9]{1,3}", item):
            raise _rrule_error(f"{name} values must be integers, got {item!r}")
        value = int(item)
        ok = (low <= abs(value) <= high) if signed else (low <= value <= high and item[0] != "-")
        if not ok or (signed and value == 0):
            bounds = f"{low}..{high} or -{high}..-{low}" if signed else f"{low}..{high}"
            raise _rrule_error(f"{name} value {item} is out of range {bounds}")


def _check_byday(raw: str, freq: int, has_byweekno: bool) -> None:
    for item in raw.split(","):
        match = _BYDAY_ITEM.match(item)
        if match is None:
            raise _rrule_error(f"BYDAY item {item!r} is not a weekday such as MO or +3TU")
        if match[1] is None:
            continue
        n = int(match[1])
        if n == 0 or abs(n) > 53:
            raise _rrule_error(f"BYDAY ordinal in {item!r} must be 1..53 or -53..-1")
        if freq not in (du.MONTHLY, du.YEARLY) or has_byweekno:
            raise _rrule_error(f"BYDAY ordinal {item!r} only works with FREQ=MONTHLY or YEARLY (without BYWEEKNO)")


def _check_rfc_combinations(parts: Mapping[str, str], freq: int) -> None:
    name = {v: k for k, v in _FREQS.items()}[freq]
    if "BYWEEKNO" in parts and freq != du.YEARLY:
        raise _rrule_error("BYWEEKNO only works with FREQ=YEARLY")
    if "BYYEARDAY" in parts and freq in (du.MONTHLY, du.WEEKLY, du.DAILY):
        raise _rrule_error(f"BYYEARDAY cannot be used with FREQ={name}")
    if "BYMONTHDAY" in parts and freq == du.WEEKLY:
        raise _rrule_error("BYMONTHDAY cannot be used with FREQ=WEEKLY")
    if "BYSETPOS" in parts:
        if freq not in (du.YEARLY, du.MONTHLY, du.WEEKLY):
            raise _rrule_error("BYSETPOS is only supported with FREQ=YEARLY, MONTHLY or WEEKLY")
        if not any(k.startswith("BY") and k != "BYSETPOS" for k in parts):
            raise _rrule_error("BYSETPOS needs another BYxxx part to select from")


def _parse_dtstart(value: Any) -> datetime | None:
    """dtstart is naive ISO wall time in tz (a naive datetime is accepted too)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and len(value) <= 64:
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError as exc:
            raise TriggerError(
                f"dtstart {value!r} is not an ISO date-time such as 2025-03-16T02:30:00", "dtstart"
            ) from exc
    else:
        raise TriggerError("dtstart must be an ISO date-time string such as 2025-03-16T02:30:00", "dtstart")
    if parsed.tzinfo is not None:
        raise TriggerError("dtstart must be naive wall-clock time in tz, without an offset or Z", "dtstart")
    if parsed.microsecond:
        raise TriggerError("dtstart must have whole seconds", "dtstart")
    if not 1900 <= parsed.year <= 2999:
        raise TriggerError("dtstart must be between the years 1900 and 2999", "dtstart")
    return parsed.replace(fold=0)


@functools.lru_cache(maxsize=512)
def _compile_rrule(normalised: str, dtstart: datetime) -> _CompiledRRule:
    """Build the dateutil rule for (expr, dtstart) once and prove, within one budget, that it fires."""
    return _compile_rrule_uncached(normalised, dtstart)


def _compile_rrule_uncached(normalised: str, dtstart: datetime) -> _CompiledRRule:
    spec = _parse_rrule(normalised)
    _check_lattice(spec, dtstart)
    _check_daily_phases(spec, dtstart)
    try:
        days = _day_filter(spec)
        rule = _rrule_of(_lattice_text(spec, days), dtstart)
        with _evaluation():
            first = _first_occurrence(spec, rule, days, dtstart)
            last = _nth_occurrence(spec, rule, days, dtstart, spec.count) if spec.count is not None else None
    except TriggerError:
        raise
    except (ValueError, TypeError, OverflowError, IndexError) as exc:
        raise _rrule_error(f"rrule cannot be evaluated: {exc}") from exc
    if first is None:
        raise _rrule_error(f"rrule {normalised!r} never produces an occurrence from dtstart {dtstart.isoformat()}")
    return _CompiledRRule(spec, dtstart, rule, days, first, last)


def _check_rrule_fires(compiled: _CompiledRRule, zone: zoneinfo.ZoneInfo) -> datetime | None:
    """Refuse an UNTIL before the first occurrence; return UNTIL as a UTC instant."""
    until = compiled.spec.until_utc(zone)
    if until is not None and _wall_to_utc(compiled.first, zone) > until:
        raise _rrule_error(f"UNTIL is before the first occurrence ({compiled.first.isoformat()} local time)")
    return until


def _first_occurrence(spec: _RRuleSpec, rule: du.rrule, days: _DayFilter | None, dtstart: datetime) -> datetime | None:
    """First occurrence of the unbounded rule, or None if it never fires.

    dateutil only stops searching at year 9999. Occurrences repeat exactly every
    lcm(INTERVAL, one 400-year cycle) FREQ units, so a rule fires at all iff it
    fires within one such period; we search the *last* whole period before year
    9999 first, and only then look for the real first occurrence from dtstart,
    which is now known to exist. Both searches run under the evaluation budget.
    """
    cycle = _UNITS_PER_400_YEARS[spec.freq]
    gcd = math.gcd(spec.interval, cycle)
    period_units = cycle * spec.interval // gcd
    period_years = 400 * spec.interval // gcd
    periods = max((_PROBE_HORIZON_YEAR - dtstart.year) // period_years - 1, 0)
    if periods:
        probe_start = _advance(dtstart, spec.freq, periods * period_units)
        if _first_from(spec, rule.replace(dtstart=probe_start), days, probe_start) is None:
            return None
    return _first_from(spec, rule, days, dtstart)


def _first_from(spec: _RRuleSpec, rule: du.rrule, days: _DayFilter | None, dtstart: datetime) -> datetime | None:
    try:
        return next(_scan(spec, dtstart, rule, days, dtstart - timedelta(seconds=1)), None)
    except TriggerError:
        raise
    except (ValueError, OverflowError):  # dateutil stepping past year 9999
        return None


def _nth_occurrence(
    spec: _RRuleSpec, rule: du.rrule, days: _DayFilter | None, dtstart: datetime, n: int
) -> datetime | None:
    """The n-th occurrence from dtstart (the last one a COUNT rule fires), found without a list."""
    last = None
    try:
        for seen, slot in enumerate(_scan(spec, dtstart, rule, days, dtstart - timedelta(seconds=1)), 1):
            last = slot
            if seen == n:
                break
    except TriggerError:
        raise
    except (ValueError, OverflowError):  # fewer than n occurrences before year 9999
        pass
    return last


class _Span(NamedTuple):
    """Scan windows of one FREQ: the first covers a couple of FREQ units; empty windows double up
    to a cap chosen so that one window of dateutil's slowest stepping stays well inside the budget."""

    first: timedelta
    cap: timedelta


_SPANS = {
    du.YEARLY: _Span(first=timedelta(days=2 * 366), cap=timedelta(days=100 * 366)),
    du.MONTHLY: _Span(first=timedelta(days=2 * 31), cap=timedelta(days=40 * 366)),
    du.WEEKLY: _Span(first=timedelta(weeks=2), cap=timedelta(weeks=1024)),
    du.DAILY: _Span(first=timedelta(days=2), cap=timedelta(days=2048)),
    du.HOURLY: _Span(first=timedelta(hours=2), cap=timedelta(days=64)),
    du.MINUTELY: _Span(first=timedelta(minutes=2), cap=timedelta(days=8)),
}
_WALL_MAX = datetime(9999, 12, 31, 23, 59, 59)
_DAY_PARTS = ("BYMONTH", "BYMONTHDAY", "BYYEARDAY", "BYDAY")


def _scan(
    spec: _RRuleSpec, dtstart: datetime, rule: du.rrule, days: _DayFilter | None, wall: datetime
) -> Iterator[datetime]:
    """The unbounded rule's occurrences strictly after ``wall``, window by budgeted window.

    dateutil looks for its next occurrence without yielding, and checks ``until`` only on
    days that pass its filters, so a rule whose days rarely match can step through centuries
    in one call. Here the day filters of WEEKLY and finer rules are applied by ``days`` to a
    ``rule`` that has none, so every dateutil step is a candidate and ``until`` bounds each
    window; an HOURLY/MINUTELY rule jumps straight to the next matching day and scans one
    day. MONTHLY and YEARLY rules keep their filters (BYSETPOS counts after them); their
    search is bounded by the 400-year cycle: a few thousand periods at most.
    """
    first = spec.interval * _SPANS[spec.freq].first
    cap = max(_SPANS[spec.freq].cap, first)
    span = first
    lo = wall
    while lo < _WALL_MAX:
        _spend()
        if days is not None and spec.freq in (du.HOURLY, du.MINUTELY):
            # One matching day at a time: (lo, end of that day]. Occurrences are whole seconds, so
            # the day's midnight is after `day - 1 s` and the next day's is not before `hi`.
            day = days.next_on_or_after((lo + timedelta(seconds=1)).date())
            if day is None:
                return
            lo = max(lo, day - timedelta(seconds=1))
            hi = day + timedelta(days=1) - timedelta(seconds=1)
            yield from _rebased(spec, dtstart, rule, lo).replace(until=hi).xafter(lo)
        else:
            hi = lo + span if _WALL_MAX - lo > span else _WALL_MAX
            span = min(span * 2, cap)
            for slot in _rebased(spec, dtstart, rule, lo).replace(until=hi).xafter(lo):
                if days is None or days.matches(slot.date()):
                    yield slot
        lo = hi


@dataclass(frozen=True)
class _DayFilter:
    """The day-level BY parts of a WEEKLY or finer rule, as a predicate on dates."""

    months: frozenset[int] | None
    monthdays: frozenset[int] | None
    yeardays: frozenset[int] | None
    weekdays: frozenset[int] | None

    def matches(self, day: date) -> bool:
        if self.months is not None and day.month not in self.months:
            return False
        if self.weekdays is not None and day.weekday() not in self.weekdays:
            return False
        if self.monthdays is not None:
            length = _days_in_month(day.year, day.month)
            if day.day not in self.monthdays and day.day - length - 1 not in self.monthdays:
                return False
        if self.yeardays is not None:
            n, length = day.timetuple().tm_yday, 366 if _is_leap(day.year) else 365
            if n not in self.yeardays and n - length - 1 not in self.yeardays:
                return False
        return True

    def next_on_or_after(self, day: date) -> datetime | None:
        """Midnight of the first matching day from ``day`` on (None past year 9999)."""
        for checked in itertools.count():
            if self.matches(day):
                return datetime.combine(day, datetime.min.time())
            if day == date.max:
                return None
            day += timedelta(days=1)
            if checked % 1024 == 1023:
                _spend()
        return None


def _days_in_month(year: int, month: int) -> int:
    return 29 if month == 2 and _is_leap(year) else (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[month - 1]


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _day_filter(spec: _RRuleSpec) -> _DayFilter | None:
    """The parts a WEEKLY-or-finer rule filters its days by (None when it has none, or BYSETPOS)."""
    parts = dict(spec.parts)
    names = ("BYMONTH",) if spec.freq == du.WEEKLY else _DAY_PARTS
    if spec.freq in (du.YEARLY, du.MONTHLY) or "BYSETPOS" in parts or not any(p in parts for p in names):
        return None

    def values(name: str) -> frozenset[int] | None:
        if name not in parts or name not in names:
            return None
        if name == "BYDAY":
            return frozenset(_WEEKDAY_CODES.index(d[-2:]) for d in parts[name].split(","))
        return frozenset(int(v) for v in parts[name].split(","))

    return _DayFilter(values("BYMONTH"), values("BYMONTHDAY"), values("BYYEARDAY"), values("BYDAY"))


def _lattice_text(spec: _RRuleSpec, days: _DayFilter | None) -> str:
    """The rule for dateutil without COUNT, UNTIL and the day parts ``days`` applies instead."""
    dropped: tuple[str, ...] = ("UNTIL", "COUNT")
    if days is not None:
        dropped += ("BYMONTH",) if spec.freq == du.WEEKLY else _DAY_PARTS
    return spec.dateutil_text(without=dropped)


def _check_subdaily_coverage(spec: _RRuleSpec) -> None:
    """Refuse an HOURLY/MINUTELY rule whose day parts skip whole years (it is a yearly rule).

    One first-matching-day-per-year probe over a full cycle of weekday/date alignments:
    a handful of dateutil steps, however the rule is written.
    """
    parts = dict(spec.parts)
    if spec.freq not in (du.HOURLY, du.MINUTELY) or not any(p in parts for p in _DAY_PARTS[:3]):
        return
    start = datetime(2001, 1, 1)
    until = datetime(2001 + SUBDAILY_COVERAGE_YEARS, 1, 1) - timedelta(seconds=1)
    years = {d.year for d in _days_probe(spec, start, first_of_year=True).replace(until=until)}
    if len(years) < SUBDAILY_COVERAGE_YEARS:
        missing = min(set(range(2001, 2001 + SUBDAILY_COVERAGE_YEARS)) - years)
        raise TriggerTooExpensive(
            f"a FREQ={'HOURLY' if spec.freq == du.HOURLY else 'MINUTELY'} rule must match some day in every year, "
            f"but its day parts match no day in {missing}: write rules for a few dates a year with FREQ=YEARLY"
        )


def _check_lattice(spec: _RRuleSpec, dtstart: datetime) -> None:
    """Refuse a DAILY/HOURLY/MINUTELY INTERVAL that never lands on an allowed weekday and time.

    Occurrences are dtstart + k * INTERVAL units; modulo a week (a day without BYDAY) they
    only reach positions congruent to dtstart's modulo gcd(step, week). Every other BY part
    only narrows the set further, so no allowed position on that lattice means no occurrence.
    """
    unit = {du.DAILY: 1440, du.HOURLY: 60, du.MINUTELY: 1}.get(spec.freq)
    if unit is None or spec.interval == 1:
        return
    parts = dict(spec.parts)
    period = 10080 if "BYDAY" in parts else 1440
    gcd = math.gcd(spec.interval * unit, period)
    if gcd == 1:
        return
    start = dtstart.hour * 60 + dtstart.minute + (dtstart.weekday() * 1440 if period == 10080 else 0)
    start -= start % unit
    days = [_WEEKDAY_CODES.index(d[-2:]) for d in parts["BYDAY"].split(",")] if "BYDAY" in parts else [0]
    hours = _lattice_values(parts, "BYHOUR", 24) if unit < 1440 else [0]
    minutes = _lattice_values(parts, "BYMINUTE", 60) if unit == 1 else [0]
    for d in days:
        for h in hours:
            for m in minutes:
                if (d * 1440 + h * 60 + m - start) % gcd == 0:
                    return
    raise _rrule_error(
        f"rrule {spec.normalised!r} never produces an occurrence from dtstart {dtstart.isoformat()}: "
        f"every INTERVAL={spec.interval} step misses the allowed weekdays and times"
    )


_WEEKDAY_CODES = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


def _check_daily_phases(spec: _RRuleSpec, dtstart: datetime) -> None:
    """Refuse an HOURLY/MINUTELY rule with day parts that would fire on only some matching days.

    With a step that does not divide a day, the lattice lands at other times each day; if on
    some days it misses every allowed hour and minute, fires can be decades apart (every 11
    minutes, but only at 23:59 on 28 February). So every matching day must see a fire: with
    the coverage rule, a next fire is then never more than two years and a few steps away.
    """
    unit = {du.HOURLY: 60, du.MINUTELY: 1}.get(spec.freq)
    parts = dict(spec.parts)
    if unit is None or not any(p in parts for p in _DAY_PARTS):
        return
    step = spec.interval * unit
    if step > 1440:
        raise TriggerTooExpensive(
            f"a FREQ={'HOURLY' if unit == 60 else 'MINUTELY'} rule with day parts cannot step more than a day "
            f"(INTERVAL={spec.interval}): days it steps over never fire; use FREQ=DAILY"
        )
    minutes = _lattice_values(parts, "BYMINUTE", 60) if unit == 1 else [0]
    allowed = {(h * 60 + m) % step for h in _lattice_values(parts, "BYHOUR", 24) for m in minutes}
    start = dtstart.hour * 60 + dtstart.minute
    start -= start % unit
    g = math.gcd(1440, step)
    missed = next(((start + j * g) % step for j in range(step // g) if (start + j * g) % step not in allowed), None)
    if missed is not None:
        raise TriggerTooExpensive(
            f"with INTERVAL={spec.interval} the rule lands at different times each day and on some days "
            "misses every allowed hour and minute, so fires could be years apart: make the INTERVAL divide "
            "a day, widen BYHOUR/BYMINUTE, or use a DAILY rule"
        )


def _lattice_values(parts: Mapping[str, str], name: str, size: int) -> list[int]:
    return [int(v) for v in parts[name].split(",")] if name in parts else list(range(size))


def _day_filters_satisfiable(spec: _RRuleSpec) -> bool:
    """Fast path for impossible dates (BYMONTH=2;BYMONTHDAY=30) in sub-weekly rules.

    For WEEKLY..MINUTELY the day-level parts mean the same thing in a YEARLY
    rule, which covers a 400-year cycle in 400 steps instead of ~146,000 days.
    """
    parts = dict(spec.parts)
    if spec.freq in (du.YEARLY, du.MONTHLY) or not any(p in parts for p in _DAY_PARTS[1:]):
        return True
    return _first_or_none(_days_probe(spec, datetime(_PROBE_HORIZON_YEAR - 400, 1, 1))) is not None


def _days_probe(spec: _RRuleSpec, start: datetime, first_of_year: bool = False) -> du.rrule:
    """A YEARLY rule over the days a WEEKLY-or-finer rule's day parts allow, at midnight.

    Day-level parts mean the same in a YEARLY rule, which walks a 400-year cycle in 400 steps
    instead of ~146,000 days; `first_of_year` keeps one day a year (BYSETPOS=1).
    """
    parts = dict(spec.parts)
    head = ["FREQ=YEARLY", *(["BYSETPOS=1"] if first_of_year else []), "BYHOUR=0", "BYMINUTE=0", "BYSECOND=0"]
    return _rrule_of(";".join(head + [f"{p}={parts[p]}" for p in _DAY_PARTS if p in parts]), start)


def _rrule_of(text: str, dtstart: datetime) -> du.rrule:
    """dateutil's rule for one RRULE value (rrulestr gives an rruleset only for several lines)."""
    rule = du.rrulestr(text, dtstart=dtstart)
    assert isinstance(rule, du.rrule)
    return rule


def _first_or_none(rule: du.rrule) -> datetime | None:
    try:
        return next(iter(rule), None)
    except (ValueError, OverflowError):  # dateutil stepping past year 9999
        return None


def _advance(start: datetime, freq: int, units: int) -> datetime:
    """``start`` moved by ``units`` FREQ units in wall time (may raise ValueError on e.g. 31 April)."""
    if freq == du.YEARLY:
        return start.replace(year=start.year + units)
    if freq == du.MONTHLY:
        years, month0 = divmod(start.month - 1 + units, 12)
        return start.replace(year=start.year + years, month=month0 + 1)
    return start + _FREQ_UNIT[freq] * units


def _units_between(freq: int, start: datetime, end: datetime) -> int:
    """FREQ units from ``start`` to ``end``; may overcount by one for YEARLY/MONTHLY."""
    if freq == du.YEARLY:
        return end.year - start.year
    if freq == du.MONTHLY:
        return (end.year - start.year) * 12 + end.month - start.month
    return (end - start) // _FREQ_UNIT[freq]


def _rebased(spec: _RRuleSpec, dtstart: datetime, rule: du.rrule, wall: datetime) -> du.rrule:
    """An equivalent rule anchored shortly before ``wall``, so dateutil need not replay from dtstart.

    A new dtstart a whole number of INTERVAL steps after the original sits on the
    same lattice of periods and keeps every value dateutil derives from dtstart
    (weekday, day of month, month, time of day, hour/minute residues), so it
    yields exactly the original occurrences from that point on. Only valid
    without COUNT, which counts from the original dtstart. For YEARLY/MONTHLY we
    step back until the day exists in that month (31st, 29 February).
    """
    steps = _units_between(spec.freq, dtstart, wall) // spec.interval - 1
    for k in range(steps, max(steps - 400, 0), -1):
        try:
            anchor = _advance(dtstart, spec.freq, k * spec.interval)
        except ValueError:
            continue
        return rule.replace(dtstart=anchor)
    return rule


# --- in words, for people (the admin shows it next to the expression) ---------------------------------

_DAY_NAMES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_MONTH_NAMES = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_RRULE_FREQ_WORDS = {
    "YEARLY": "yearly",
    "MONTHLY": "monthly",
    "WEEKLY": "weekly",
    "DAILY": "daily",
    "HOURLY": "hourly",
    "MINUTELY": "every minute",
}


def describe(trigger: Mapping[str, Any]) -> str:
    """The trigger in words with its zone: "at 09:00 on Monday to Friday, Europe/Amsterdam".

    Cron expressions of the usual shapes read as sentences; anything else reads as its fields
    ("at minutes 0, 20, 40 of hours 8-17"). An rrule reads as its frequency and the rule. A trigger
    that does not parse says so (the caller shows the expression beside it anyway).
    """
    try:
        kind, expr, tz = _required_fields(trigger)
        if kind == "rrule":
            spec = expr.upper().removeprefix("RRULE:")
            parts = dict(p.split("=", 1) for p in spec.split(";") if "=" in p)
            freq = _RRULE_FREQ_WORDS.get(parts.get("FREQ", ""), "repeating")
            start = trigger.get("dtstart")
            return f"{freq} ({spec}){f' from {start}' if start else ''}, {tz}"
        cron = _parse_cron(expr)
    except TriggerError as exc:
        return f"does not parse: {exc}"
    words = [_cron_times(cron)]
    words.append(_cron_days(cron) or ("every day" if words[0].startswith("at ") else ""))
    if len(cron.months) < 12:
        words.append("in " + _joined([_MONTH_NAMES[m - 1] for m in sorted(cron.months)]))
    return f"{' '.join(w for w in words if w)}, {tz}"


def _joined(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _numbers(values: tuple[int, ...] | list[int]) -> str:
    """1, 2, 3, 7 -> "1-3, 7"."""
    runs: list[list[int]] = []
    for v in values:
        if runs and v == runs[-1][-1] + 1:
            runs[-1].append(v)
        else:
            runs.append([v])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 2 else ", ".join(map(str, r)) for r in runs)


def _cron_times(cron: _Cron) -> str:
    minutes, hours = cron.minutes, cron.hours
    if len(minutes) == 60 and len(hours) == 24:
        return "every minute"
    if len(hours) * len(minutes) <= 6:
        return "at " + _joined([f"{h:02d}:{m:02d}" for h in hours for m in minutes])
    if len(hours) == 24:
        if len(minutes) == 1:
            return f"every hour at minute {minutes[0]}"
        step = minutes[1] - minutes[0]
        if minutes[0] == 0 and all(b - a == step for a, b in zip(minutes, minutes[1:], strict=False)):
            return f"every {step} minutes"
        return f"at minutes {_numbers(minutes)} of every hour"
    if len(minutes) == 60:
        return f"every minute of hours {_numbers(hours)}"
    if len(minutes) == 1:
        return f"at minute {minutes[0]} of hours {_numbers(hours)}"
    return f"at minutes {_numbers(minutes)} of hours {_numbers(hours)}"


def _cron_days(cron: _Cron) -> str:
    weekdays = sorted({d % 7 for d in cron.weekdays})
    week = ""
    if len(weekdays) < 7:
        week = "on " + _weekday_words(weekdays)
    month = "" if len(cron.days) == 31 else f"on day{'s' if len(cron.days) > 1 else ''} {_numbers(sorted(cron.days))}"
    if week and month:
        return f"{month} of the month {'or' if cron.day_or else 'if also'} {week.removeprefix('on ')}"
    return f"{month} of the month" if month else week


def _weekday_words(days: list[int]) -> str:
    """Monday-first: [1..5] -> "Monday to Friday"; [0, 6] -> "Saturday and Sunday"."""
    order = sorted(days, key=lambda d: (d - 1) % 7)
    positions = [(d - 1) % 7 for d in order]
    if len(order) >= 3 and positions == list(range(positions[0], positions[0] + len(order))):
        return f"{_DAY_NAMES[order[0]]} to {_DAY_NAMES[order[-1]]}"
    return _joined([_DAY_NAMES[d] for d in order])
