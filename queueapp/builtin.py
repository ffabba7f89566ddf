"""Built-in job functions for smoke tests and benchmarks."""

from __future__ import annotations

import asyncio
from typing import Any

from django.conf import settings

from queueapp.registry import JobContext, job_function


@job_function("hq.noop", max_tries=1)
async def noop(ctx: JobContext) -> None:
    """Do nothing (benchmarks)."""
    return None


@job_function("hq.echo", max_tries=1)
async def echo(ctx: JobContext) -> dict[str, Any]:
    """Return the arguments as the result."""
    return ctx.args


SLEEP_MAX_S = 3600


def _sleep_args(args: dict[str, Any], admin: bool) -> dict[str, str]:
    """`seconds` is a number up to 3600 for workspace admins, `HQ_MEMBER_SLEEP_MAX_S` for members."""
    seconds = args.get("seconds", 1)
    limit = SLEEP_MAX_S if admin else min(settings.HQ_MEMBER_SLEEP_MAX_S, SLEEP_MAX_S)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds <= limit:
        who = "" if admin else " for a workspace member (admins: 3600)"
        return {"seconds": f"Must be a number of seconds from 0 to {limit:g}{who}."}
    return {}


@job_function("hq.sleep", max_tries=1, timeout=SLEEP_MAX_S, check_args=_sleep_args)
async def sleep(ctx: JobContext) -> dict[str, Any]:
    """Sleep for `seconds` (at most 3600), then return how long it slept."""
    seconds = float(ctx.args.get("seconds", 1))
    if not 0 <= seconds <= SLEEP_MAX_S:
        raise ValueError(f"seconds must be between 0 and {SLEEP_MAX_S}")
    await asyncio.sleep(seconds)
    return {"slept_s": seconds}
