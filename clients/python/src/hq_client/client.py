"""`Client` and `AsyncClient`: HQ's REST API from Python, blocking or async (the same methods)."""

from __future__ import annotations

from types import TracebackType
from typing import Self

import httpx

from hq_client._core import Api, AsyncRunner, RetryPolicy, SyncRunner
from hq_client._operations import Operations


def _api(base_url: str, token: str, retry: RetryPolicy | None, page_size: int) -> Api:
    if not 1 <= page_size <= 500:
        raise ValueError("page_size must be 1 to 500")
    return Api(base_url=base_url, token=token, retry=retry or RetryPolicy(), page_size=page_size)


class Client(SyncRunner, Operations):
    """HQ's REST API, blocking: `Client("https://hq.example.com", "hq_pat_...")`.

    :param timeout_s: per request (connect, read, write), in seconds.
    :param retry: how reads and submits are retried on transport errors and 503.
    :param page_size: items per page when a list method reads a list (1..500).
    :param transport: an httpx transport (e.g. to route through a proxy or a test double of the network).
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        page_size: int = 100,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.api = _api(base_url, token, retry, page_size)
        self.http = httpx.Client(timeout=timeout_s, transport=transport)

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


class AsyncClient(AsyncRunner, Operations):
    """HQ's REST API for asyncio: the same methods as `Client`, awaited (list methods are async iterators)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        page_size: int = 100,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.api = _api(base_url, token, retry, page_size)
        self.http = httpx.AsyncClient(timeout=timeout_s, transport=transport)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.aclose()
