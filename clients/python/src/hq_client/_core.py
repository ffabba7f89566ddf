"""The one implementation behind `Client` and `AsyncClient`.

Every method is written once, as a *program*: a generator that yields effects (`Send` an HTTP
request, `Sleep`, `Gather` other programs run at once) and returns the result. `Client` runs
programs with a blocking `httpx.Client`, `time.sleep` and a pool of threads; `AsyncClient` runs
the same programs with `httpx.AsyncClient`, `asyncio.sleep` and tasks. Building requests,
retrying, parsing answers into results or typed errors, paging and waiting live here, never in a
transport.

Operations are descriptors (`Op`, `PagedOp`, `Flow`): on a `Client` instance they are plain
methods, on an `AsyncClient` coroutine (or async-iterator) methods, typed for both.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Concatenate, Generic, ParamSpec, Self, TypeVar, overload
from urllib.parse import quote

import httpx

from hq_client.errors import TransportError, Unavailable, error_for

T = TypeVar("T")
P = ParamSpec("P")

VERSION = "0.1.0"
#: HQ's largest page (`limit` 1..500).
MAX_PAGE_SIZE = 500


@dataclass(frozen=True)
class Send:
    """Effect: send this request; the runner answers with the response, or throws httpx.TransportError in."""

    request: httpx.Request


@dataclass(frozen=True)
class Sleep:
    """Effect: pause this long (seconds)."""

    seconds: float


@dataclass(frozen=True)
class Gather:
    """Effect: run these programs at once, at most `limit` at a time (each over its own connection);
    the runner answers with their results in order.

    They start in order. Once one fails, none starts after it, and the runner throws in the failure
    of the first (in order) that failed; the ones already under way finish first."""

    programs: tuple[Program[Any], ...]
    limit: int


Effect = Send | Sleep | Gather
#: A method written once: yields effects, returns its result.
Program = Generator[Effect, Any, T]


@dataclass(frozen=True)
class RetryPolicy:
    """How calls that are safe to repeat (reads, and submits, which carry an idempotency key) are retried.

    They are retried on a transport error (no answer) and on 503 (a dependency of HQ is away),
    with capped exponential backoff and jitter; a 503's `Retry-After` is a floor. Any other
    answer, and any failure of a call that is not safe to repeat, is raised at once.

    :param tries: tries in all, the first one included (1: never retry).
    :param base_s: the first delay; each next one doubles, up to `cap_s`.
    """

    tries: int = 4
    base_s: float = 0.25
    cap_s: float = 5.0

    def delay_s(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed try number `attempt` (1-based)."""
        backoff = min(self.base_s * 2.0 ** (attempt - 1), self.cap_s) * random.uniform(0.5, 1.0)
        return max(backoff, min(retry_after or 0.0, self.cap_s * 4))


@dataclass(frozen=True)
class Api:
    """Where HQ is and how to speak to it: builds every request the client sends."""

    base_url: str
    token: str
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    page_size: int = 100

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> httpx.Request:
        """The request for `method` on `path` (already filled), with the token and JSON body."""
        query = {
            k: [_query_value(item) for item in v] if isinstance(v, list | tuple | set | frozenset) else _query_value(v)
            for k, v in (params or {}).items()
            if v is not None
        }
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/json",
            "User-Agent": f"hq-client/{VERSION}",
        }
        return httpx.Request(method, self.base_url.rstrip("/") + path, params=query, json=json, headers=headers)


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return rfc3339(value)
    return str(value)


def rfc3339(value: datetime) -> str:
    """An aware datetime as HQ takes it; a naive one is refused here rather than by a 400."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"HQ takes aware datetimes only (got naive {value.isoformat()})")
    return value.isoformat()


def new_idempotency_key() -> str:
    """A fresh idempotency key (what a submit sends when the caller gives none)."""
    return f"hqc-{uuid.uuid4().hex}"


def fill(path: str, values: dict[str, Any]) -> str:
    """`path` with each `{name}` replaced by its value, quoted as one path segment."""
    for name, value in values.items():
        text = str(value)
        if not text:
            raise ValueError(f"{name} must not be empty")
        path = path.replace("{" + name + "}", quote(text, safe=""))
    if "{" in path:
        raise ValueError(f"unfilled path parameter in {path}")
    return path


def exchange(
    api: Api,
    method: str,
    path: str,
    *,
    params: dict[str, Any] | None = None,
    json: Any = None,
    ok: tuple[int, ...] = (200,),
    retry: bool = False,
) -> Program[Any]:
    """One call: send, retry when `retry` allows, then return the answer's JSON or raise its error."""
    attempt = 0
    while True:
        attempt += 1
        request = api.request(method, path, params=params, json=json)
        again = retry and attempt < api.retry.tries
        try:
            response: httpx.Response = yield Send(request)
        except httpx.TransportError as exc:
            if again:
                yield Sleep(api.retry.delay_s(attempt))
                continue
            raise TransportError(f"{method} {path}: no answer from HQ ({exc.__class__.__name__}: {exc})") from exc
        if response.status_code in ok:
            return response.json() if response.content else None
        error = error_for(response.status_code, _json_or_none(response), response.headers.get("Retry-After"))
        if again and isinstance(error, Unavailable):
            yield Sleep(api.retry.delay_s(attempt, error.retry_after))
            continue
        raise error


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


@dataclass(frozen=True)
class Route:
    """An operation's method and path, bound to the client that calls it."""

    api: Api
    method: str
    path: str

    def call(
        self,
        *,
        path: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        json: Any = None,
        ok: tuple[int, ...] = (200,),
        retry: bool | None = None,
    ) -> Program[Any]:
        """This operation's one call; reads are retried by default, writes only when `retry` says so."""
        safe = self.method == "GET" if retry is None else retry
        return exchange(self.api, self.method, fill(self.path, path or {}), params=params, json=json, ok=ok, retry=safe)

    def listing(
        self, key: str, *, path: dict[str, Any] | None = None, params: dict[str, Any] | None = None
    ) -> Listing[Any]:
        """This (paginated) operation read page by page; `key` is the list's key in each page."""
        return Listing(self.api, fill(self.path, path or {}), key, params or {})


@dataclass
class Listing(Generic[T]):
    """A paginated list read to its end: `{"<key>": [...], "total", "limit", "offset"}` pages.

    `total` is the count HQ gave with the latest page (None before the first).
    """

    api: Api
    path: str
    key: str
    params: dict[str, Any]
    offset: int = 0
    total: int | None = None
    done: bool = False

    def next_page(self) -> Program[Any]:
        params = {**self.params, "limit": min(self.api.page_size, MAX_PAGE_SIZE), "offset": self.offset}
        return exchange(self.api, "GET", self.path, params=params, retry=True)

    def take(self, page: dict[str, Any]) -> list[T]:
        """The items of `page`, moving past them; `done` once the last page is taken."""
        items: list[T] = list(page.get(self.key) or [])
        self.total = int(page.get("total", 0))
        self.offset += len(items)
        self.done = not items or self.offset >= self.total
        return items


# --- runners: the only code that differs between the blocking and the async client ----------------


@dataclass(frozen=True)
class Done(Generic[T]):
    """A program's result: it asks for nothing more."""

    value: T


def _step(program: Program[T], value: Any, failure: BaseException | None) -> Effect | Done[T]:
    """Resume `program` with the last effect's value (or its failure); its next effect or its result.

    The one step both runners take; they differ only in how they perform an effect."""
    try:
        return program.throw(failure) if failure is not None else program.send(value)
    except StopIteration as stop:
        return Done(stop.value)


class _Gathering:
    """The bookkeeping of a `Gather` both runners share: which programs to start, and its answer."""

    def __init__(self) -> None:
        self.failed = False

    def start(self, program: Program[Any]) -> bool:
        """Whether to run `program`: not once one has failed (then it is closed unstarted)."""
        if self.failed:
            program.close()
        return not self.failed

    def fail(self) -> None:
        self.failed = True

    @staticmethod
    def answer(outcomes: list[Any]) -> tuple[list[Any] | None, Exception | None]:
        """(the results in order, None), or (None, the first failure in order): every program that
        was skipped comes after it. The runner throws the failure into the program that gathered."""
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                return None, outcome
        return outcomes, None


class SyncRunner:
    """Runs programs with a blocking httpx.Client (a `Gather` on a pool of threads)."""

    api: Api
    http: httpx.Client

    def run(self, program: Program[T]) -> T:
        """Run `program` to its result, performing its effects."""
        value: Any = None
        failure: BaseException | None = None
        while True:
            effect = _step(program, value, failure)
            if isinstance(effect, Done):
                return effect.value
            value, failure = None, None
            if isinstance(effect, Sleep):
                time.sleep(effect.seconds)
                continue
            if isinstance(effect, Gather):
                value, failure = self._gather(effect)
                continue
            try:
                value = self.http.send(effect.request)
            except httpx.TransportError as exc:
                failure = exc

    def _gather(self, gather: Gather) -> tuple[list[Any] | None, Exception | None]:
        gathering = _Gathering()

        def one(program: Program[Any]) -> Any:
            if not gathering.start(program):
                return None
            try:
                return self.run(program)
            except Exception as exc:
                gathering.fail()
                return exc

        if gather.limit <= 1 or len(gather.programs) <= 1:
            return gathering.answer([one(program) for program in gather.programs])
        with ThreadPoolExecutor(max_workers=min(gather.limit, len(gather.programs))) as pool:
            return gathering.answer(list(pool.map(one, gather.programs)))

    def iterate(self, listing: Listing[T]) -> Iterator[T]:
        """Every item of `listing`, page by page."""
        while not listing.done:
            yield from listing.take(self.run(listing.next_page()))


class AsyncRunner:
    """Runs programs with an httpx.AsyncClient (a `Gather` as concurrent tasks)."""

    api: Api
    http: httpx.AsyncClient

    async def run(self, program: Program[T]) -> T:
        """Run `program` to its result, performing its effects."""
        value: Any = None
        failure: BaseException | None = None
        while True:
            effect = _step(program, value, failure)
            if isinstance(effect, Done):
                return effect.value
            value, failure = None, None
            if isinstance(effect, Sleep):
                await asyncio.sleep(effect.seconds)
                continue
            if isinstance(effect, Gather):
                value, failure = await self._gather(effect)
                continue
            try:
                value = await self.http.send(effect.request)
            except httpx.TransportError as exc:
                failure = exc

    async def _gather(self, gather: Gather) -> tuple[list[Any] | None, Exception | None]:
        gathering = _Gathering()
        slots = asyncio.Semaphore(max(gather.limit, 1))

        async def one(program: Program[Any]) -> Any:
            async with slots:
                if not gathering.start(program):
                    return None
                try:
                    return await self.run(program)
                except Exception as exc:
                    gathering.fail()
                    return exc

        return gathering.answer(list(await asyncio.gather(*(one(program) for program in gather.programs))))

    async def iterate(self, listing: Listing[T]) -> AsyncIterator[T]:
        """Every item of `listing`, page by page."""
        while not listing.done:
            for item in listing.take(await self.run(listing.next_page())):
                yield item


# --- operation descriptors --------------------------------------------------------------------------


class _Method(ABC, Generic[P, T]):
    """A client method written once as a program: a plain method on a `Client`, a coroutine method
    on an `AsyncClient`."""

    name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @abstractmethod
    def program(self, api: Api, *args: P.args, **kwargs: P.kwargs) -> Program[T]:
        """The method's calls, as a program the client's runner performs."""

    @overload
    def __get__(self, obj: None, owner: type) -> Self: ...
    @overload
    def __get__(self, obj: SyncRunner, owner: type) -> Callable[P, T]: ...
    @overload
    def __get__(self, obj: AsyncRunner, owner: type) -> Callable[P, Coroutine[Any, Any, T]]: ...
    def __get__(self, obj: SyncRunner | AsyncRunner | None, owner: type) -> Any:
        if obj is None:
            return self
        runner = obj

        def method(*args: P.args, **kwargs: P.kwargs) -> Any:
            return runner.run(self.program(runner.api, *args, **kwargs))

        method.__name__, method.__doc__ = self.name, self.__doc__
        return method


class Flow(_Method[P, T]):
    """A client method built from other calls (`build(api, ...)`), e.g. `wait`."""

    def __init__(self, build: Callable[Concatenate[Api, P], Program[T]]) -> None:
        self.build = build
        self.name, self.__doc__ = build.__name__, build.__doc__

    def program(self, api: Api, *args: P.args, **kwargs: P.kwargs) -> Program[T]:
        return self.build(api, *args, **kwargs)


class Op(_Method[P, T]):
    """The client method for one `/v1` operation (its method and path as `/v1/schema` names them)."""

    def __init__(self, method: str, path: str, build: Callable[Concatenate[Route, P], Program[T]]) -> None:
        self.method, self.path, self.build = method, path, build
        self.name, self.__doc__ = build.__name__, build.__doc__

    def program(self, api: Api, *args: P.args, **kwargs: P.kwargs) -> Program[T]:
        return self.build(Route(api, self.method, self.path), *args, **kwargs)


class PagedOp(Generic[P, T]):
    """The client method for one paginated `/v1` list: iterates over every item of every page.

    On a `Client` it returns an iterator, on an `AsyncClient` an async iterator.
    """

    method = "GET"

    def __init__(self, path: str, build: Callable[Concatenate[Route, P], Listing[T]]) -> None:
        self.path, self.build = path, build
        self.name, self.__doc__ = build.__name__, build.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def listing(self, api: Api, *args: P.args, **kwargs: P.kwargs) -> Listing[T]:
        """A fresh read of this list from its first page."""
        return self.build(Route(api, self.method, self.path), *args, **kwargs)

    @overload
    def __get__(self, obj: None, owner: type) -> Self: ...
    @overload
    def __get__(self, obj: SyncRunner, owner: type) -> Callable[P, Iterator[T]]: ...
    @overload
    def __get__(self, obj: AsyncRunner, owner: type) -> Callable[P, AsyncIterator[T]]: ...
    def __get__(self, obj: SyncRunner | AsyncRunner | None, owner: type) -> Any:
        if obj is None:
            return self
        runner = obj

        def method(*args: P.args, **kwargs: P.kwargs) -> Any:
            return runner.iterate(self.listing(runner.api, *args, **kwargs))

        method.__name__, method.__doc__ = self.name, self.__doc__
        return method


def flow(build: Callable[Concatenate[Api, P], Program[T]]) -> Flow[P, T]:
    """Make `build(api, ...)` a client method (sync on Client, async on AsyncClient)."""
    return Flow(build)


def op(method: str, path: str) -> Callable[[Callable[Concatenate[Route, P], Program[T]]], Op[P, T]]:
    """Make `build(route, ...)` the client method for the operation `method path`."""

    def wrap(build: Callable[Concatenate[Route, P], Program[T]]) -> Op[P, T]:
        return Op(method, path, build)

    return wrap


def paged(path: str) -> Callable[[Callable[Concatenate[Route, P], Listing[T]]], PagedOp[P, T]]:
    """Make `build(route, ...)` the iterating client method for the paginated list at `path`."""

    def wrap(build: Callable[Concatenate[Route, P], Listing[T]]) -> PagedOp[P, T]:
        return PagedOp(path, build)

    return wrap


def collect(listing: Listing[T]) -> Program[list[T]]:
    """Every item of `listing`, read page by page into one list (for methods built on a whole list)."""
    items: list[T] = []
    while not listing.done:
        items += listing.take((yield from listing.next_page()))
    return items
