"""Unit tests for schedules.triggers: exact UTC instants, refusals and properties.

Pure functions only: no Django, no database, no Redis, no mocks.
"""

from __future__ import annotations

import functools
import zoneinfo
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schedules.triggers import (
    TriggerError,
    fire_times,
    latest_fire_at_or_before,
    next_fire_after,
    use_pinned_tzdata,
    validate_trigger,
)

# Zone data comes from the pinned tzdata package, as in production.
use_pinned_tzdata()


@pytest.fixture(autouse=True)
def _clean_redis():
    """Shadow the suite-wide Redis fixture: these tests touch no services."""
    yield


def utc(text: str) -> datetime:
    """'2025-03-30T01:00Z' -> aware UTC datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def cron(expr: str, tz: str = "UTC") -> dict[str, str]:
    return {"kind": "cron", "expr": expr, "tz": tz}


def rrule(expr: str, dtstart: str | None = "2025-01-01T09:00:00", tz: str = "UTC") -> dict[str, str]:
    trigger = {"kind": "rrule", "expr": expr, "tz": tz}
    if dtstart is not None:
        trigger["dtstart"] = dtstart
    return trigger


# --------------------------------------------------------------------------- #
# DST and odd offsets: exact UTC instants
# --------------------------------------------------------------------------- #

DST_CASES = [
    # Stockholm spring forward 2025-03-30 02:00 -> 03:00: 02:30 fires once at 03:00 local.
    ("Europe/Stockholm", "30 2 * * *", "2025-03-29T02:00Z", ["2025-03-30T01:00Z", "2025-03-31T00:30Z"]),
    # Stockholm fall back 2025-10-26 03:00 -> 02:00: 02:30 fires once, at its first (CEST) occurrence.
    ("Europe/Stockholm", "30 2 * * *", "2025-10-25T02:00Z", ["2025-10-26T00:30Z", "2025-10-27T01:30Z"]),
    # Four slots in the gap collapse into one fire at the end of the gap.
    ("Europe/Stockholm", "*/15 2 * * *", "2025-03-29T23:00Z", ["2025-03-30T01:00Z", "2025-03-31T00:00Z"]),
    # 02:00 and 02:30 are in the gap, 03:00 is the gap's end: one fire for all three.
    (
        "Europe/Stockholm",
        "*/30 * * * *",
        "2025-03-30T00:10Z",
        ["2025-03-30T00:30Z", "2025-03-30T01:00Z", "2025-03-30T01:30Z"],
    ),
    # New York spring forward 2025-03-09 02:00 EST -> 03:00 EDT.
    ("America/New_York", "30 2 * * *", "2025-03-08T12:00Z", ["2025-03-09T07:00Z", "2025-03-10T06:30Z"]),
    ("America/New_York", "0 2 * * *", "2025-03-08T12:00Z", ["2025-03-09T07:00Z", "2025-03-10T06:00Z"]),
    # New York fall back 2025-11-02 02:00 EDT -> 01:00 EST.
    ("America/New_York", "30 1 * * *", "2025-11-01T12:00Z", ["2025-11-02T05:30Z", "2025-11-03T06:30Z"]),
    (
        "America/New_York",
        "*/30 * * * *",
        "2025-11-02T04:50Z",
        ["2025-11-02T05:00Z", "2025-11-02T05:30Z", "2025-11-02T07:00Z"],
    ),
    # `after` in the second pass of 01:xx: 01:30's first occurrence already passed.
    ("America/New_York", "*/30 * * * *", "2025-11-02T06:10Z", ["2025-11-02T07:00Z", "2025-11-02T07:30Z"]),
    # Lord Howe: 30-minute DST. 2025-10-05 02:00 (+10:30) -> 02:30 (+11).
    ("Australia/Lord_Howe", "15 2 * * *", "2025-10-04T00:00Z", ["2025-10-04T15:30Z", "2025-10-05T15:15Z"]),
    # 2025-04-06 02:00 (+11) -> 01:30 (+10:30): 01:30-01:59 repeat, each fires once (first pass).
    ("Australia/Lord_Howe", "45 1 * * *", "2025-04-05T00:00Z", ["2025-04-05T14:45Z", "2025-04-06T15:15Z"]),
    (
        "Australia/Lord_Howe",
        "*/10 1 * * *",
        "2025-04-05T14:25Z",
        ["2025-04-05T14:30Z", "2025-04-05T14:40Z", "2025-04-05T14:50Z", "2025-04-06T14:30Z"],
    ),
    # Kathmandu is +05:45 all year.
    ("Asia/Kathmandu", "0 9 * * *", "2025-01-01T00:00Z", ["2025-01-01T03:15Z", "2025-01-02T03:15Z"]),
    ("Asia/Kathmandu", "0 0 * * *", "2025-06-30T18:00Z", ["2025-06-30T18:15Z", "2025-07-01T18:15Z"]),
]


@pytest.mark.parametrize(("tz", "expr", "after", "expected"), DST_CASES)
def test_cron_fires_at_exact_utc_instants(tz: str, expr: str, after: str, expected: list[str]) -> None:
    fires = fire_times(cron(expr, tz), utc(after), len(expected))
    assert [iso(f) for f in fires] == expected
    assert all(f.tzinfo is UTC for f in fires)


@pytest.mark.parametrize(
    ("instant", "offset_minutes"),
    [
        ("2025-04-05T14:59Z", 11 * 60),
        ("2025-04-05T15:00Z", 10 * 60 + 30),
        ("2025-10-04T15:29Z", 10 * 60 + 30),
        ("2025-10-04T15:30Z", 11 * 60),
    ],
)
def test_pinned_tzdata_has_the_lord_howe_2025_transitions(instant: str, offset_minutes: int) -> None:
    zone = zoneinfo.ZoneInfo("Australia/Lord_Howe")
    assert utc(instant).astimezone(zone).utcoffset() == timedelta(minutes=offset_minutes)


def test_use_pinned_tzdata_ignores_the_os_zone_database() -> None:
    use_pinned_tzdata()
    assert zoneinfo.TZPATH == ()
    assert next_fire_after(cron("0 9 * * *", "Europe/Stockholm"), utc("2025-01-01T00:00Z")) == utc("2025-01-01T08:00Z")


def test_next_fire_is_strictly_after_a_fire_time() -> None:
    trigger = cron("0 8 * * MON", "Europe/Stockholm")
    first = next_fire_after(trigger, utc("2025-06-01T00:00Z"))
    assert first == utc("2025-06-02T06:00Z")
    assert next_fire_after(trigger, first) == utc("2025-06-09T06:00Z")
    assert next_fire_after(trigger, first - timedelta(microseconds=1)) == first


def test_after_in_another_zone_is_the_same_instant() -> None:
    trigger = cron("0 8 * * *", "Europe/Stockholm")
    tokyo = timezone(timedelta(hours=9))
    assert next_fire_after(trigger, datetime(2025, 6, 1, 16, 0, tzinfo=tokyo)) == utc("2025-06-02T06:00Z")


# --------------------------------------------------------------------------- #
# Cron semantics
# --------------------------------------------------------------------------- #


def test_day_of_month_and_day_of_week_are_ored_when_both_restricted() -> None:
    """Vixie cron: '0 0 13 * FRI' fires on every 13th *and* every Friday."""
    fires = fire_times(cron("0 0 13 * FRI"), utc("2025-07-01T00:00Z"), 5)
    # July 2025: Fridays 4, 11, 18, 25; the 13th is a Sunday.
    assert [f.day for f in fires] == [4, 11, 13, 18, 25]


def test_day_fields_are_anded_when_one_starts_with_star() -> None:
    """Vixie cron: '*/2' is unrestricted-with-step, so it intersects with MON."""
    fires = fire_times(cron("0 0 */2 * MON"), utc("2025-01-01T00:00Z"), 6)
    assert all(f.weekday() == 0 and f.day % 2 == 1 for f in fires)
    assert [f.date().isoformat() for f in fires[:2]] == ["2025-01-13", "2025-01-27"]


@pytest.mark.parametrize(
    ("expr", "minutes"),
    [
        ("5-5 * * * *", [5, 5, 5]),  # croniter alone reads an equal range as the whole field
        ("10-20/5 * * * *", [10, 15, 20]),
        ("0,30 * * * *", [30, 0, 30]),
    ],
)
def test_minute_field_forms(expr: str, minutes: list[int]) -> None:
    fires = fire_times(cron(expr), utc("2025-01-01T00:00:30Z"), 3)
    assert [f.minute for f in fires] == minutes


def test_names_sunday_as_seven_and_month_names() -> None:
    weekend = fire_times(cron("0 12 * * FRI-SUN"), utc("2025-06-02T00:00Z"), 3)
    assert [f.strftime("%a") for f in weekend] == ["Fri", "Sat", "Sun"]
    assert fire_times(cron("0 0 * * 7"), utc("2025-06-02T00:00Z"), 1)[0].strftime("%a") == "Sun"
    assert fire_times(cron("0 0 1 jun,DEC *"), utc("2025-01-01T00:00Z"), 2)[1].month == 12


@pytest.mark.parametrize(
    ("macro", "expanded"),
    [("@hourly", "0 * * * *"), ("@daily", "0 0 * * *"), ("@weekly", "0 0 * * 0"), ("@YEARLY", "0 0 1 1 *")],
)
def test_macros_are_expanded_to_five_fields(macro: str, expanded: str) -> None:
    assert validate_trigger(cron(macro))["expr"] == expanded


def test_validate_trigger_returns_a_normalised_copy() -> None:
    trigger = {"kind": " Cron ", "expr": "  0  8 * *   mon ", "tz": "Europe/Stockholm", "extra": 1}
    assert validate_trigger(trigger) == {"kind": "cron", "expr": "0 8 * * MON", "tz": "Europe/Stockholm"}
    assert trigger["expr"] == "  0  8 * *   mon "


def test_leap_day_cron() -> None:
    fires = fire_times(cron("0 0 29 2 *"), utc("2025-01-01T00:00Z"), 2)
    assert [iso(f) for f in fires] == ["2028-02-29T00:00Z", "2032-02-29T00:00Z"]


# --------------------------------------------------------------------------- #
# RRULE
# --------------------------------------------------------------------------- #

THIRD_TUESDAY = rrule("FREQ=MONTHLY;BYDAY=+3TU;BYHOUR=9;BYMINUTE=0", "2025-03-16T02:30:00", "Europe/Stockholm")


def test_rrule_third_tuesday_in_stockholm() -> None:
    fires = fire_times(THIRD_TUESDAY, utc("2025-03-01T00:00Z"), 4)
    assert [iso(f) for f in fires] == [
        "2025-03-18T08:00Z",  # CET
        "2025-04-15T07:00Z",  # CEST
        "2025-05-20T07:00Z",
        "2025-06-17T07:00Z",
    ]


def test_rrule_far_from_dtstart_is_still_exact() -> None:
    assert next_fire_after(THIRD_TUESDAY, utc("2035-03-01T00:00Z")) == utc("2035-03-20T08:00Z")


def test_rrule_dst_gap_and_fold() -> None:
    daily = rrule("FREQ=DAILY", "2025-03-29T02:30:00", "Europe/Stockholm")
    assert [iso(f) for f in fire_times(daily, utc("2025-03-01T00:00Z"), 3)] == [
        "2025-03-29T01:30Z",
        "2025-03-30T01:00Z",  # 02:30 does not exist: end of the gap
        "2025-03-31T00:30Z",
    ]
    assert [iso(f) for f in fire_times(daily, utc("2025-10-25T12:00Z"), 2)] == [
        "2025-10-26T00:30Z",  # first 02:30 (CEST) only
        "2025-10-27T01:30Z",
    ]


def test_rrule_count_is_exhausted() -> None:
    trigger = rrule("FREQ=DAILY;COUNT=3")
    fires = fire_times(trigger, utc("2024-06-01T00:00Z"), 10)
    assert [iso(f) for f in fires] == ["2025-01-01T09:00Z", "2025-01-02T09:00Z", "2025-01-03T09:00Z"]
    assert next_fire_after(trigger, fires[-1]) is None
    assert next_fire_after(trigger, utc("2030-01-01T00:00Z")) is None


@pytest.mark.parametrize("until", ["20250103T090000Z", "20250103T100000"])
def test_rrule_until_utc_and_floating(until: str) -> None:
    trigger = rrule(f"FREQ=DAILY;UNTIL={until}", "2025-01-01T10:00:00", "Europe/Stockholm")
    fires = fire_times(trigger, utc("2024-01-01T00:00Z"), 10)
    assert [iso(f) for f in fires] == ["2025-01-01T09:00Z", "2025-01-02T09:00Z", "2025-01-03T09:00Z"]
    assert next_fire_after(trigger, utc("2025-01-03T09:00Z")) is None


def test_rrule_prefix_is_stripped_and_expr_normalised() -> None:
    normalised = validate_trigger(rrule("rrule:byday=MO;freq=weekly", "2025-03-16 02:30"))
    assert normalised == {
        "kind": "rrule",
        "expr": "FREQ=WEEKLY;BYDAY=MO",
        "tz": "UTC",
        "dtstart": "2025-03-16T02:30:00",
    }


def test_rrule_without_dtstart_validates_but_cannot_be_evaluated() -> None:
    trigger = rrule("FREQ=DAILY", dtstart=None)
    assert validate_trigger(trigger) == {"kind": "rrule", "expr": "FREQ=DAILY", "tz": "UTC"}
    with pytest.raises(TriggerError) as info:
        next_fire_after(trigger, utc("2025-01-01T00:00Z"))
    assert info.value.field == "dtstart"


def test_minutely_rule_years_after_dtstart_keeps_its_phase() -> None:
    trigger = rrule("FREQ=MINUTELY;INTERVAL=7", "2020-01-01T00:00:00")
    after = utc("2026-01-01T00:00Z")
    elapsed = int((after - utc("2020-01-01T00:00Z")) / timedelta(minutes=1))
    expected = utc("2020-01-01T00:00Z") + timedelta(minutes=7 * (elapsed // 7 + 1))
    assert next_fire_after(trigger, after) == expected


def test_monthly_31st_skips_short_months_far_from_dtstart() -> None:
    trigger = rrule("FREQ=MONTHLY;BYMONTHDAY=31", "2025-01-31T12:00:00")
    fires = fire_times(trigger, utc("2031-02-01T00:00Z"), 3)
    assert [f.date().isoformat() for f in fires] == ["2031-03-31", "2031-05-31", "2031-07-31"]


RRULE_EQUIVALENCE_RULES = [
    ("FREQ=MINUTELY;INTERVAL=7", timedelta(days=20)),
    ("FREQ=MINUTELY;INTERVAL=45;BYHOUR=9,10", timedelta(days=60)),
    ("FREQ=HOURLY;INTERVAL=5;BYMINUTE=10", timedelta(days=400)),
    ("FREQ=HOURLY;INTERVAL=5;BYHOUR=0,1,2,3,4", timedelta(days=400)),
    ("FREQ=HOURLY;INTERVAL=4;BYMINUTE=15,45", timedelta(days=400)),
    ("FREQ=DAILY;INTERVAL=3;BYHOUR=8,20", timedelta(days=4000)),
    ("FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,FR", timedelta(days=9000)),
    ("FREQ=WEEKLY;INTERVAL=3;BYDAY=SU;WKST=SU", timedelta(days=9000)),
    ("FREQ=MONTHLY;INTERVAL=2;BYMONTHDAY=31", timedelta(days=9000)),
    ("FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1", timedelta(days=9000)),
    ("FREQ=MONTHLY", timedelta(days=9000)),
    ("FREQ=YEARLY", timedelta(days=12000)),
    ("FREQ=YEARLY;INTERVAL=3;BYWEEKNO=1,20;BYDAY=MO", timedelta(days=12000)),
]


@settings(max_examples=60, deadline=None)
@given(
    case=st.sampled_from(RRULE_EQUIVALENCE_RULES),
    dtstart=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2030, 12, 31)),
    fraction=st.floats(min_value=0, max_value=1),
)
def test_rrule_matches_plain_dateutil_replay(case: tuple[str, timedelta], dtstart: datetime, fraction: float) -> None:
    """Re-anchoring near `after` must give exactly what replaying from dtstart gives (UTC: no DST)."""
    from dateutil.rrule import rrulestr

    expr, span = case
    dtstart = dtstart.replace(microsecond=0)
    after = dtstart + span * fraction
    text = expr if "WKST" in expr else expr + ";WKST=MO"
    replay = rrulestr(text, dtstart=dtstart).xafter(after, count=3)
    expected = [d.replace(tzinfo=UTC) for d in replay]
    trigger = rrule(expr, dtstart.isoformat())
    assert fire_times(trigger, after.replace(tzinfo=UTC), len(expected)) == expected


# --------------------------------------------------------------------------- #
# Refusals
# --------------------------------------------------------------------------- #

FIXED_OFFSET_ZONES = ["UTC+3", "+03:00", "GMT+3", "Etc/GMT-3", "Etc/GMT+5", "UTC-05:00", "Etc/GMT0", "GMT-0", "EST"]

REFUSED = [
    ({"expr": "* * * * *", "tz": "UTC"}, "kind"),
    ({"kind": "interval", "expr": "* * * * *", "tz": "UTC"}, "kind"),
    ({"kind": 3, "expr": "* * * * *", "tz": "UTC"}, "kind"),
    ({"kind": "cron", "tz": "UTC"}, "expr"),
    ({"kind": "cron", "expr": "* * * * *"}, "tz"),
    ({"kind": "cron", "expr": 5, "tz": "UTC"}, "expr"),
    ({"kind": "cron", "expr": ["*"] * 5, "tz": "UTC"}, "expr"),
    ({"kind": "cron", "expr": "* * * * *", "tz": 1}, "tz"),
    (cron(""), "expr"),
    (cron("* * * * * *"), "expr"),
    (cron("0 * * * * * 2025"), "expr"),
    (cron("* * * *"), "expr"),
    (cron("@reboot"), "expr"),
    (cron("@every 5m"), "expr"),
    (cron("61 * * * *"), "expr"),
    (cron("* 24 * * *"), "expr"),
    (cron("0 0 32 * *"), "expr"),
    (cron("0 0 0 * *"), "expr"),
    (cron("0 0 * 13 *"), "expr"),
    (cron("0 0 * * 8"), "expr"),
    (cron("garbage"), "expr"),
    (cron("a b c d e"), "expr"),
    (cron("0 0 * * FOO"), "expr"),
    (cron("0 0 * JAN-FOO *"), "expr"),
    (cron("0 0 L * *"), "expr"),
    (cron("0 0 * * 5L"), "expr"),
    (cron("0 0 * * MON#2"), "expr"),
    (cron("0 0 ? * MON"), "expr"),
    (cron("0 0 15W * *"), "expr"),
    (cron("H * * * *"), "expr"),
    (cron("5/15 * * * *"), "expr"),
    (cron("50-10 * * * *"), "expr"),
    (cron("*/0 * * * *"), "expr"),
    (cron("*/61 * * * *"), "expr"),
    (cron("1,,2 * * * *"), "expr"),
    (cron("-1 * * * *"), "expr"),
    (cron("0 0 31 2 *"), "expr"),  # never fires
    (cron("0\u00a00 * * *"), "expr"),
    (cron("0 0 * * *", "Mars/Olympus"), "tz"),
    (cron("0 0 * * *", "../etc/passwd"), "tz"),
    (cron("0 0 * * *", "/etc/localtime"), "tz"),
    (cron("0 0 * * *", "Europe"), "tz"),
    (cron("0 0 * * *", "europe/stockholm"), "tz"),
    (cron("0 0 * * *", ""), "tz"),
    (cron("0 0 * * *", "Europe/Stockholm\x00"), "tz"),
    (cron("0 0 * * *", "Europe/Stockholm " * 10), "tz"),
    ({**cron("0 0 * * *"), "dtstart": "2025-01-01T00:00:00"}, "dtstart"),
    (rrule("FREQ=SECONDLY"), "expr"),
    (rrule("FREQ=MINUTELY;BYSECOND=0,30"), "expr"),
    (rrule("FREQ=HOURLY;BYSECOND=1,2"), "expr"),
    (rrule("FREQ=FORTNIGHTLY"), "expr"),
    (rrule("BYDAY=MO"), "expr"),
    (rrule(""), "expr"),
    (rrule("FREQ=DAILY;FREQ=DAILY"), "expr"),
    (rrule("FREQ=DAILY;INTERVAL=0"), "expr"),
    (rrule("FREQ=DAILY;COUNT=0"), "expr"),
    (rrule("FREQ=DAILY;COUNT=3;UNTIL=20250110T000000Z"), "expr"),
    (rrule("FREQ=DAILY;UNTIL=20250110"), "expr"),
    (rrule("FREQ=DAILY;UNTIL=20251340T000000Z"), "expr"),
    (rrule("FREQ=DAILY;UNTIL=20240101T000000Z"), "expr"),  # before the first occurrence
    (rrule("FREQ=DAILY;BYHOUR=24"), "expr"),
    (rrule("FREQ=DAILY;BYMINUTE=-5"), "expr"),
    (rrule("FREQ=MONTHLY;BYMONTHDAY=0"), "expr"),
    (rrule("FREQ=WEEKLY;BYDAY=+1MO"), "expr"),
    (rrule("FREQ=MONTHLY;BYDAY=XX"), "expr"),
    (rrule("FREQ=DAILY;BYWEEKNO=1"), "expr"),
    (rrule("FREQ=DAILY;BYSETPOS=1;BYHOUR=1"), "expr"),
    (rrule("FREQ=YEARLY;BYEASTER=0"), "expr"),
    (rrule("FREQ=DAILY;X-NAME=1"), "expr"),
    (rrule("FREQ=DAILY;WKST=XX"), "expr"),
    (rrule("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30"), "expr"),  # never fires
    (rrule("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30"), "expr"),
    (rrule("FREQ=DAILY;INTERVAL=7;BYDAY=TU", "2025-01-01T09:00:00"), "expr"),  # a Wednesday lattice
    (rrule("DTSTART:20250101T090000\nRRULE:FREQ=DAILY"), "expr"),
    (rrule("FREQ=DAILY;DTSTART=20250101T090000"), "expr"),
    (rrule("RRULE:FREQ=DAILY\nEXDATE:20250102T090000"), "expr"),
    (rrule("FREQ=DAILY", "yesterday"), "dtstart"),
    (rrule("FREQ=DAILY", "2025-13-01T00:00:00"), "dtstart"),
    (rrule("FREQ=DAILY", "2025-03-16T02:30:00+01:00"), "dtstart"),
    (rrule("FREQ=DAILY", "2025-03-16T02:30:00Z"), "dtstart"),
    (rrule("FREQ=DAILY", "2025-03-16T02:30:00.5"), "dtstart"),
    (rrule("FREQ=DAILY", "0001-01-01T00:00:00"), "dtstart"),
    ({**rrule("FREQ=DAILY"), "dtstart": 20250101}, "dtstart"),
    (cron("x" * 10_000), "expr"),
    (rrule("F" * 10_000), "expr"),
] + [(cron("0 0 * * *", tz), "tz") for tz in FIXED_OFFSET_ZONES]


@pytest.mark.parametrize(("trigger", "field"), REFUSED, ids=[repr(t)[:60] for t, _ in REFUSED])
def test_bad_triggers_are_refused(trigger: dict, field: str) -> None:
    with pytest.raises(TriggerError) as info:
        validate_trigger(trigger)
    assert info.value.field == field
    assert str(info.value)
    with pytest.raises(TriggerError):
        next_fire_after(trigger, utc("2025-01-01T00:00Z"))


@pytest.mark.parametrize("tz", FIXED_OFFSET_ZONES)
def test_fixed_offsets_are_refused_with_the_reason(tz: str) -> None:
    with pytest.raises(TriggerError, match="daylight-saving"):
        validate_trigger(cron("0 0 * * *", tz))


@pytest.mark.parametrize(
    "tz", ["UTC", "Etc/UTC", "Etc/GMT", "GMT", "America/Argentina/Buenos_Aires", "Pacific/Port_Moresby"]
)
def test_legitimate_zone_names_are_accepted(tz: str) -> None:
    assert validate_trigger(cron("0 0 * * *", tz))["tz"] == tz


def test_not_a_mapping_is_refused() -> None:
    with pytest.raises(TriggerError):
        validate_trigger(["cron", "* * * * *", "UTC"])  # type: ignore[arg-type]


@pytest.mark.parametrize("function", [next_fire_after, lambda t, a: fire_times(t, a, 2)])
def test_naive_after_is_refused(function) -> None:
    with pytest.raises(TriggerError, match="timezone-aware"):
        function(cron("* * * * *"), datetime(2025, 1, 1))
    with pytest.raises(ValueError):
        function(cron("* * * * *"), datetime(2025, 1, 1))


def test_naive_catch_up_bounds_are_refused() -> None:
    with pytest.raises(TriggerError):
        latest_fire_at_or_before(cron("* * * * *"), datetime(2025, 1, 2), utc("2025-01-01T00:00Z"))


def test_fire_times_count_must_be_a_natural_number() -> None:
    assert fire_times(cron("* * * * *"), utc("2025-01-01T00:00Z"), 0) == []
    with pytest.raises(TriggerError):
        fire_times(cron("* * * * *"), utc("2025-01-01T00:00Z"), -1)


# --------------------------------------------------------------------------- #
# Catch-up after downtime
# --------------------------------------------------------------------------- #


def test_daily_schedule_down_for_a_week() -> None:
    latest, skipped = latest_fire_at_or_before(
        cron("0 8 * * *", "Europe/Stockholm"), before=utc("2025-03-08T12:00Z"), not_before=utc("2025-03-01T12:00Z")
    )
    assert latest == utc("2025-03-08T07:00Z")
    assert skipped == 6


def test_every_minute_schedule_down_for_a_week() -> None:
    latest, skipped = latest_fire_at_or_before(
        cron("* * * * *", "Europe/Stockholm"), before=utc("2025-03-08T00:00:30Z"), not_before=utc("2025-03-01T00:00Z")
    )
    assert latest == utc("2025-03-08T00:00Z")
    assert skipped == 7 * 24 * 60 - 1  # estimated past 1000 fires; exact for evenly spaced ones


def test_catch_up_window_ending_in_the_repeated_hour() -> None:
    latest, skipped = latest_fire_at_or_before(
        cron("*/30 * * * *", "America/New_York"), before=utc("2025-11-02T06:10Z"), not_before=utc("2025-11-02T04:00Z")
    )
    assert (latest, skipped) == (utc("2025-11-02T05:30Z"), 2)  # 00:30, 01:00, 01:30 EDT


def test_catch_up_with_sparse_and_empty_windows() -> None:
    yearly = cron("0 0 1 1 *")
    assert latest_fire_at_or_before(yearly, utc("2027-06-01T00:00Z"), utc("2024-06-01T00:00Z")) == (
        utc("2027-01-01T00:00Z"),
        2,
    )
    assert latest_fire_at_or_before(yearly, utc("2025-06-01T00:00Z"), utc("2025-02-01T00:00Z")) == (None, 0)
    assert latest_fire_at_or_before(yearly, utc("2025-01-01T00:00Z"), utc("2025-06-01T00:00Z")) == (None, 0)
    exhausted = rrule("FREQ=DAILY;COUNT=3")
    assert latest_fire_at_or_before(exhausted, utc("2026-01-01T00:00Z"), utc("2024-01-01T00:00Z")) == (
        utc("2025-01-03T09:00Z"),
        2,
    )


def test_catch_up_window_boundaries() -> None:
    """not_before is exclusive, before is inclusive."""
    hourly = cron("0 * * * *")
    assert latest_fire_at_or_before(hourly, utc("2025-01-01T03:00Z"), utc("2025-01-01T01:00Z")) == (
        utc("2025-01-01T03:00Z"),
        1,
    )


# --------------------------------------------------------------------------- #
# Properties
# --------------------------------------------------------------------------- #

ZONES = [
    "UTC",
    "Europe/Stockholm",
    "Europe/London",
    "Europe/Dublin",
    "Europe/Moscow",
    "Europe/Chisinau",
    "America/New_York",
    "America/Los_Angeles",
    "America/St_Johns",
    "America/Santiago",
    "America/Sao_Paulo",
    "America/Havana",
    "America/Caracas",
    "America/Argentina/Buenos_Aires",
    "America/Nuuk",
    "Australia/Lord_Howe",
    "Australia/Adelaide",
    "Australia/Sydney",
    "Asia/Kathmandu",
    "Asia/Tehran",
    "Asia/Kolkata",
    "Asia/Gaza",
    "Asia/Beirut",
    "Asia/Pyongyang",
    "Africa/Casablanca",
    "Africa/Cairo",
    "Antarctica/Troll",
    "Pacific/Apia",
    "Pacific/Chatham",
    "Pacific/Kiritimati",
    "Pacific/Marquesas",
    "Pacific/Norfolk",
]
EXPRS = ["*/7 * * * *", "30 2 * * *", "0 0 * * *", "15 1-3 * * SUN", "0 */5 * * *"]
_DOW = {name: i for i, name in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}


def _field_matches(field: str, value: int, low: int, high: int) -> bool:
    """A deliberately tiny, independent matcher for the property-test expressions."""
    for item in field.split(","):
        body, _, step = item.partition("/")
        if body == "*":
            start, end = low, high
        elif "-" in body:
            start, end = (int(_DOW.get(x, x)) for x in body.split("-"))
        else:
            start = end = int(_DOW.get(body, body))
        if start <= value <= end and (value - start) % int(step or 1) == 0:
            return True
    return False


def cron_matches(expr: str, wall: datetime) -> bool:
    minute, hour, dom, month, dow = expr.split()
    return (
        wall.second == 0
        and _field_matches(minute, wall.minute, 0, 59)
        and _field_matches(hour, wall.hour, 0, 23)
        and _field_matches(dom, wall.day, 1, 31)
        and _field_matches(month, wall.month, 1, 12)
        and _field_matches(dow, (wall.weekday() + 1) % 7, 0, 6)
    )


def is_fire_instant(expr: str, zone: zoneinfo.ZoneInfo, instant: datetime) -> bool:
    """Oracle: a slot's first occurrence, or the end of a gap that swallowed a slot."""
    local = instant.astimezone(zone)
    if local.fold == 0 and cron_matches(expr, local.replace(tzinfo=None)):
        return True
    before = (instant - timedelta(seconds=1)).astimezone(zone)
    jump = local.utcoffset() - before.utcoffset()
    if jump <= timedelta(0):
        return False
    gap_end = local.replace(tzinfo=None)  # `instant` is a forward transition: wall time skips a gap
    gap_start = gap_end - jump
    probe = gap_start.replace(second=0) + (timedelta(minutes=1) if gap_start.second else timedelta(0))
    while probe < gap_end:
        if cron_matches(expr, probe):
            return True
        probe += timedelta(minutes=1)
    return False


@functools.cache
def transitions(tz: str, year: int) -> tuple[datetime, ...]:
    """UTC instants in ``year`` where the zone's offset changes (to the second)."""
    zone = zoneinfo.ZoneInfo(tz)
    found = []
    moment = datetime(year, 1, 1, tzinfo=UTC)
    step = timedelta(hours=6)
    while moment.year == year:
        nxt = moment + step
        if moment.astimezone(zone).utcoffset() != nxt.astimezone(zone).utcoffset():
            lo, hi = moment, nxt
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                mid = mid.replace(microsecond=0)
                if mid.astimezone(zone).utcoffset() == lo.astimezone(zone).utcoffset():
                    lo = mid
                else:
                    hi = mid
            found.append(hi)
        moment = nxt
    return tuple(found)


naive_moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2037, 12, 31))


@settings(max_examples=150, deadline=None)
@given(tz=st.sampled_from(ZONES), expr=st.sampled_from(EXPRS), after=naive_moments)
def test_chained_fires_increase_and_are_slots_or_gap_ends(tz: str, expr: str, after: datetime) -> None:
    zone = zoneinfo.ZoneInfo(tz)
    cursor = after.replace(tzinfo=UTC)
    trigger = cron(expr, tz)
    for _ in range(20):
        fire = next_fire_after(trigger, cursor)
        assert fire is not None and fire > cursor
        assert fire.tzinfo is UTC
        assert is_fire_instant(expr, zone, fire), f"{fire} ({fire.astimezone(zone)}) is not a slot of {expr}"
        cursor = fire


@settings(max_examples=120, deadline=None)
@given(
    tz=st.sampled_from(ZONES),
    expr=st.sampled_from(EXPRS),
    year=st.integers(min_value=2000, max_value=2037),
    pick=st.integers(min_value=0, max_value=10),
    lead=st.integers(min_value=0, max_value=3 * 3600),
)
def test_no_fire_is_missed_or_doubled_around_transitions(tz: str, expr: str, year: int, pick: int, lead: int) -> None:
    """Compare with a brute-force, minute-by-minute oracle over 8 hours around a transition."""
    zone = zoneinfo.ZoneInfo(tz)
    moments = transitions(tz, year) or (datetime(year, 6, 1, tzinfo=UTC),)
    after = moments[pick % len(moments)] - timedelta(seconds=lead)
    end = after + timedelta(hours=8)
    expected = []
    candidate = after.replace(second=0) + timedelta(minutes=1)
    candidates = {candidate + timedelta(minutes=i) for i in range(8 * 60 + 1)} | set(moments)
    for instant in sorted(candidates):
        if after < instant <= end and is_fire_instant(expr, zone, instant):
            expected.append(instant)
    got = []
    cursor = after
    while (fire := next_fire_after(cron(expr, tz), cursor)) is not None and fire <= end:
        got.append(fire)
        cursor = fire
    assert got == expected


@settings(max_examples=300, deadline=None)
@given(expr=st.text(max_size=80), kind=st.sampled_from(["cron", "rrule"]), with_dtstart=st.booleans())
def test_any_text_expr_is_either_valid_or_a_trigger_error(expr: str, kind: str, with_dtstart: bool) -> None:
    trigger = {"kind": kind, "expr": expr, "tz": "Europe/Stockholm"}
    if with_dtstart and kind == "rrule":
        trigger["dtstart"] = "2025-03-16T02:30:00"
    try:
        validate_trigger(trigger)
    except TriggerError:
        pass


cronish = st.text(alphabet="0123456789*,-/ LW#?@HMONTUEFRISAJDCvb", max_size=40)
rruleish = st.lists(
    st.sampled_from(
        [
            "FREQ=DAILY",
            "FREQ=MINUTELY",
            "FREQ=MONTHLY",
            "FREQ=YEARLY",
            "FREQ=WEEKLY",
            "FREQ=HOURLY",
            "INTERVAL=3",
            "INTERVAL=0",
            "COUNT=2",
            "UNTIL=20300101T000000Z",
            "BYDAY=+3TU",
            "BYDAY=MO,FR",
            "BYDAY=-1SU",
            "BYMONTHDAY=31",
            "BYMONTHDAY=-1",
            "BYMONTH=2",
            "BYYEARDAY=366",
            "BYWEEKNO=53",
            "BYHOUR=9",
            "BYMINUTE=0,30",
            "BYSECOND=0",
            "BYSETPOS=2",
            "BYSETPOS=-1",
            "WKST=SU",
            "BYMONTHDAY=30",
        ]
    ),
    max_size=5,
).map(";".join)


@settings(max_examples=300, deadline=None)
@given(
    expr=cronish | rruleish, kind=st.sampled_from(["cron", "rrule"]), tz=st.sampled_from(ZONES + ["UTC+3", "Nowhere"])
)
def test_near_valid_exprs_never_crash(expr: str, kind: str, tz: str) -> None:
    trigger = {"kind": kind, "expr": expr, "tz": tz, "dtstart": "2024-02-29T02:30:00"}
    if kind == "cron":
        del trigger["dtstart"]
    try:
        validate_trigger(trigger)
    except TriggerError:
        return
    fires = fire_times(trigger, utc("2025-01-01T00:00Z"), 5)
    assert fires == sorted(set(fires))


@settings(max_examples=200, deadline=None)
@given(tz=st.text(max_size=40))
def test_any_text_tz_is_either_valid_or_a_trigger_error(tz: str) -> None:
    try:
        validate_trigger(cron("0 0 * * *", tz))
    except TriggerError as exc:
        assert exc.field == "tz"


# --------------------------------------------------------------------------- #
# Cron matching against croniter (the oracle, on naive wall time)
# --------------------------------------------------------------------------- #


def _cron_field(low: int, high: int, names: tuple[str, ...] = ()) -> st.SearchStrategy[str]:
    number = st.integers(low, high).map(str)
    if names:
        number = number | st.sampled_from(names)
    ranges = st.tuples(st.integers(low, high), st.integers(low, high)).map(lambda ab: f"{min(ab)}-{max(ab)}")
    steps = st.tuples(ranges | st.just("*"), st.integers(1, high - low + 1)).map(lambda rs: f"{rs[0]}/{rs[1]}")
    item = number | ranges | steps
    return st.just("*") | item | st.lists(item, min_size=2, max_size=4).map(",".join)


cron_exprs = st.tuples(
    _cron_field(0, 59),
    _cron_field(0, 23),
    _cron_field(1, 31),
    _cron_field(1, 12, ("JAN", "MAR", "JUN", "DEC")),
    _cron_field(0, 7, ("SUN", "MON", "FRI", "SAT")),
).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(expr=cron_exprs, after=naive_moments)
def test_cron_slots_match_croniter_on_wall_time(expr: str, after: datetime) -> None:
    """Our field-set matcher against croniter given the same expanded fields and day rule."""
    from croniter import croniter

    from schedules.triggers import TriggerError, _parse_cron

    try:
        parsed = _parse_cron(expr)
    except TriggerError:
        return  # refused (reversed range, never a real date): covered by the refusal tests
    ours = parsed.slots_after(after)
    fields = (parsed.minutes, parsed.hours, parsed.days, parsed.months, parsed.weekdays)
    explicit = " ".join(",".join(map(str, sorted(values))) for values in fields)  # no croniter parsing quirks
    oracle = croniter(explicit, after, day_or=parsed.day_or)
    for _ in range(8):
        assert next(ours) == oracle.get_next(datetime), expr


@pytest.mark.parametrize(
    ("expr", "first"),
    [
        ("0 0 31 4,6,9,11 *", None),  # no 31st in those months
        ("0 0 30,31 2 *", None),
        ("0 0 31 4,5 *", "2025-05-31T00:00Z"),
        ("0 0 30 2 MON", "2025-02-03T00:00Z"),  # both restricted: OR, so every Monday of February
        ("0 0 */30 2 SAT", "2025-02-01T00:00Z"),  # '*/30' is {1, 31}: AND with Saturday
        ("0 12 29 2 *", "2028-02-29T12:00Z"),
    ],
)
def test_day_fields_that_never_meet_a_real_date_are_refused(expr: str, first: str | None) -> None:
    if first is None:
        with pytest.raises(TriggerError, match="never matches a real date"):
            validate_trigger(cron(expr))
    else:
        assert iso(next_fire_after(cron(expr), utc("2025-01-15T00:00Z"))) == first


def test_a_cron_fire_past_year_9999_is_none() -> None:
    assert next_fire_after(cron("0 0 1 1 *"), utc("9999-06-01T00:00Z")) is None
    assert next_fire_after(cron("59 23 31 12 *"), utc("9999-12-31T23:58Z")) == utc("9999-12-31T23:59Z")
