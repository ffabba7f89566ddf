"""Locales and the delivered header, formatted with babel."""

from __future__ import annotations

import zoneinfo
from datetime import datetime

from babel import Locale, UnknownLocaleError
from babel.core import parse_locale
from babel.dates import format_datetime

from hq.errors import ValidationFailed

LOCALE_MAX_CHARS = 35


def _invalid_locale(tag: object) -> ValidationFailed:
    return ValidationFailed(
        f"{tag!r} is not a locale HQ can format in.",
        fields={"delivery_locale": ["Must be a BCP-47 locale tag that babel knows, such as en-US or sv-SE."]},
    )


def validate_locale(tag: str) -> str:
    """Return the canonical BCP-47 form of `tag` ("sv_se" → "sv-SE"), or raise ValidationFailed.

    A tag is valid when babel parses it. babel falls back silently for some tags ("und" and
    "en-ZZ" both become en-US); those are refused rather than delivered in a locale nobody asked for.
    Variants babel does not know are dropped ("de-CH-1996" → "de-CH").
    """
    if not isinstance(tag, str) or not tag or len(tag) > LOCALE_MAX_CHARS:
        raise _invalid_locale(tag)
    text = tag.replace("_", "-")
    try:
        language, territory, _script, _variant = parse_locale(text, sep="-")[:4]
        locale = Locale.parse(text, sep="-")
    except (ValueError, UnknownLocaleError) as exc:
        raise _invalid_locale(tag) from exc
    if language.lower() == "und" or (territory and locale.territory != territory.upper()):
        raise _invalid_locale(tag)
    return "-".join(part for part in (locale.language, locale.script, locale.territory, locale.variant) if part)


def zone_label(moment: datetime) -> str:
    """Name the zone of an aware `moment` as tzdata abbreviates it: "CET", "EST", "UTC".

    Zones without a letter abbreviation (tzdata writes "+04") read "UTC+04".
    """
    name = moment.tzname() or "UTC"
    return name if name.isalpha() else f"UTC{name}"


def delivery_header(*, schedule_name: str, slot: datetime, tz: str, locale: str) -> str:
    """Return "<schedule name> · <slot in tz> <zone>", e.g. "Daily digest · 3 mars 2025 09:00:00 CET".

    The time is babel's "medium" format in `locale`; the zone is the tzdata abbreviation
    (`zone_label`), which reads the same in every locale.
    """
    if slot.tzinfo is None:
        raise ValueError("slot must be an aware datetime")
    local = slot.astimezone(zoneinfo.ZoneInfo(tz))
    babel_locale = Locale.parse(locale.replace("_", "-"), sep="-")
    when = format_datetime(local, format="medium", tzinfo=local.tzinfo, locale=babel_locale)
    name = " ".join(schedule_name.split())
    return f"{name} · {when} {zone_label(local)}"
