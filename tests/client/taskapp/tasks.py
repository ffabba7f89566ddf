"""Tasks defined once: HQ discovers and runs them; the remote project enqueues them over HTTP."""

from __future__ import annotations

from hq_client.django.compat import task


@task
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@task
async def shout(text: str, *, times: int = 1) -> str:
    """Upper-case `text`, `times` times (an async task)."""
    return " ".join([text.upper()] * times)


@task(max_tries=2, retry_backoff=0)
def always_fails(order_id: int) -> None:
    """Fail every attempt."""
    raise ValueError(f"remote boom for order {order_id}")


@task(requires_approval=True)
def refund(amount: int) -> dict[str, int]:
    """Refund, once a person approved it."""
    return {"refunded": amount}
