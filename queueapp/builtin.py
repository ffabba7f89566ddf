"""Built-in job functions for smoke tests and benchmarks."""

from __future__ import annotations

import asyncio
from typing import Any

from queueapp.registry import JobContext, job_function


@job_function("hq.noop", max_tries=1)
async def noop(ctx: JobContext) -> None:
    """Do nothing (benchmarks)."""
    return None


@job_function("hq.echo", max_tries=1)
async def echo(ctx: JobContext) -> dict[str, Any]:
    """Return the arguments as the result."""
    return ctx.args


@job_function("hq.sleep", max_tries=1, timeout=3600)
async def sleep(ctx: JobContext) -> dict[str, Any]:
    """Sleep for `seconds` (at most 3600), then return how long it slept."""
    seconds = float(ctx.args.get("seconds", 1))
    if not 0 <= seconds <= 3600:
        raise ValueError("seconds must be between 0 and 3600")
    await asyncio.sleep(seconds)
    return {"slept_s": seconds}
