"""The one source of the current time, shiftable for tests (`HQ_CLOCK_OFFSET_S`)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

_offset_s = float(os.environ.get("HQ_CLOCK_OFFSET_S", "0") or 0)


def now() -> datetime:
    """Return the current aware UTC time, shifted by the configured offset."""
    return datetime.now(UTC) + timedelta(seconds=_offset_s)


def set_offset(seconds: float) -> None:
    """Shift the clock of this process (tests); subprocesses get it via HQ_CLOCK_OFFSET_S."""
    global _offset_s
    _offset_s = float(seconds)
    os.environ["HQ_CLOCK_OFFSET_S"] = str(_offset_s)


def offset() -> float:
    """Return the current shift in seconds."""
    return _offset_s
