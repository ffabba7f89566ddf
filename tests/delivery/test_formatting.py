"""Locale validation and the delivered header."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from delivery.formatting import delivery_header, validate_locale
from hq.errors import ValidationFailed

SLOT = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("tag", "canonical"),
    [
        ("sv-SE", "sv-SE"),
        ("en-US", "en-US"),
        ("sv_SE", "sv-SE"),
        ("EN-us", "en-US"),
        ("de", "de"),
        ("zh-Hant-TW", "zh-Hant-TW"),
        ("zh-TW", "zh-Hant-TW"),
        ("es-419", "es-419"),
        ("sr-Cyrl-RS", "sr-Cyrl-RS"),
    ],
)
def test_validate_locale__canonical(tag, canonical):
    assert validate_locale(tag) == canonical


@pytest.mark.parametrize(
    "tag", ["", "xx", "x", "en-", "-en", "en--US", "und", "en-ZZ", "sv-US", "en-US-u-ca-gregory", "e" * 36, None, 5]
)
def test_validate_locale__refused(tag):
    with pytest.raises(ValidationFailed) as exc:
        validate_locale(tag)
    assert list(exc.value.fields) == ["delivery_locale"]


def test_delivery_header__sv_se():
    header = delivery_header(schedule_name="Daily digest", slot=SLOT, tz="Europe/Stockholm", locale="sv-SE")
    assert header == "Daily digest · 3 mars 2025 09:00:00 CET"


def test_delivery_header__en_us_differs():
    header = delivery_header(schedule_name="Daily digest", slot=SLOT, tz="Europe/Stockholm", locale="en-US")
    assert header == "Daily digest · Mar 3, 2025, 9:00:00\u202fAM CET"


def test_delivery_header__slot_in_the_trigger_zone_with_dst():
    summer = datetime(2025, 7, 1, 12, 0, tzinfo=UTC)
    assert delivery_header(schedule_name="R", slot=summer, tz="America/New_York", locale="en-US").endswith(
        "8:00:00\u202fAM EDT"
    )


@pytest.mark.parametrize(("tz", "label"), [("Asia/Dubai", "UTC+04"), ("UTC", "UTC"), ("Asia/Kolkata", "IST")])
def test_delivery_header__zone_label(tz, label):
    assert delivery_header(schedule_name="R", slot=SLOT, tz=tz, locale="de-DE").endswith(f" {label}")


def test_delivery_header__collapses_whitespace_in_the_name():
    header = delivery_header(schedule_name="  Weekly\n report ", slot=SLOT, tz="UTC", locale="en")
    assert header.startswith("Weekly report · ")


def test_delivery_header__refuses_a_naive_slot():
    with pytest.raises(ValueError):
        delivery_header(schedule_name="R", slot=SLOT.replace(tzinfo=None), tz="UTC", locale="en-US")
