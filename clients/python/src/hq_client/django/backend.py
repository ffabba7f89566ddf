"""`RemoteBackend`: a Django project's tasks run on a remote HQ, over its REST API.

    TASKS = {
        "default": {
            "BACKEND": "hq_client.django.RemoteBackend",
            "QUEUES": ["default"],
            "OPTIONS": {"URL": "https://hq.example.com", "TOKEN": "hq_pat_..."},
        }
    }

`my_task.enqueue(...)` submits one job (POST /v1/queue/jobs) naming the task's module path; HQ's
workers run it, because the same task module is installed on HQ as a plugin app (`HQ_PLUGINS`)
and discovered there at start-up. `enqueue_many` submits many calls in batches of 1,000.
`get_result` reads the job, its events (per-attempt errors, workers) and, for a rejected job, its
approval request, and reads them as a `TaskResult` the way HQ's in-process backend does
(`hq_client.django.base.HQTaskBackend`, which both subclass).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from django.core import checks
from django.utils.module_loading import import_string

from hq_client._core import Api, Program, RetryPolicy, collect
from hq_client._operations import Operations, submission
from hq_client.client import AsyncClient, Client
from hq_client.django.base import HQTaskBackend
from hq_client.django.compat import InvalidTask, Task, TaskResult, TaskResultDoesNotExist, task_enqueued
from hq_client.errors import NotFound, ValidationError
from hq_client.types import BatchJob, HITLRequest, Job, JobEvent, JobSubmission

T = TypeVar("T")

#: OPTIONS keys RemoteBackend reads.
OPTION_KEYS = frozenset({"URL", "TOKEN", "TIMEOUT_S", "RETRIES", "BATCH_CONCURRENCY"})
#: Batch requests `enqueue_many` has under way at once, unless OPTIONS say otherwise.
BATCH_CONCURRENCY = 3


class RemoteBackend(HQTaskBackend):
    """Run this project's Django tasks as jobs on a remote HQ (README, "Django tasks on a remote HQ").

    OPTIONS: `URL` (HQ's base URL) and `TOKEN` (a personal access token with `queue:read` and
    `queue:write`), required; `TIMEOUT_S` per request (default 10); `RETRIES`, tries of a read or
    submit on a transport error or 503 (default 4; a submit carries an idempotency key, so a retry
    never makes a second job); `BATCH_CONCURRENCY`, the batch requests `enqueue_many` sends at once,
    each over its own keep-alive connection (default 3; 1 sends them one after another).
    """

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.url = str(self.options.get("URL") or "")
        self.token = str(self.options.get("TOKEN") or "")
        self.timeout_s = float(self.options.get("TIMEOUT_S", 10.0))
        self.batch_concurrency: int = self.options.get("BATCH_CONCURRENCY", BATCH_CONCURRENCY)
        self.api = Api(
            base_url=self.url, token=self.token, retry=RetryPolicy(tries=int(self.options.get("RETRIES", 4)))
        )
        self._client: Client | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Client:
        """The backend's blocking client (one connection pool, shared by threads)."""
        with self._lock:
            if self._client is None:
                self._client = Client(self.url, self.token, timeout_s=self.timeout_s, retry=self.api.retry)
            return self._client

    def _async_client(self) -> AsyncClient:
        return AsyncClient(self.url, self.token, timeout_s=self.timeout_s, retry=self.api.retry)

    # --- the contract ------------------------------------------------------------------------------------

    def enqueue(self, task: Task[Any, T], args: Any, kwargs: Any) -> TaskResult[T]:
        self.validate_task(task)
        job = self.client.run(Operations.job_submit.program(self.api, **self._submission(task, args, kwargs)))
        return self._enqueued(task, job)

    async def aenqueue(self, task: Task[Any, T], args: Any, kwargs: Any) -> TaskResult[T]:
        self.validate_task(task)
        async with self._async_client() as hq:
            job = await hq.run(Operations.job_submit.program(self.api, **self._submission(task, args, kwargs)))
        return self._enqueued(task, job)

    def enqueue_many(
        self, task: Task[Any, T], calls: Iterable[tuple[Sequence[Any], Mapping[str, Any]]]
    ) -> list[TaskResult[T]]:
        """Enqueue `task` once per `(args, kwargs)` in `calls`, 1,000 to a request (POST /v1/queue/jobs/batch),
        `BATCH_CONCURRENCY` requests at once."""
        jobs = self.client.run(self._submit_many(task, calls))
        return [self._enqueued(task, job) for job in jobs]

    async def aenqueue_many(
        self, task: Task[Any, T], calls: Iterable[tuple[Sequence[Any], Mapping[str, Any]]]
    ) -> list[TaskResult[T]]:
        """`enqueue_many`, awaited."""
        program = self._submit_many(task, calls)
        async with self._async_client() as hq:
            jobs = await hq.run(program)
        return [self._enqueued(task, job) for job in jobs]

    def get_result(self, result_id: str) -> TaskResult[Any]:
        return self._result(result_id, self.client.run(self._read(result_id)))

    async def aget_result(self, result_id: str) -> TaskResult[Any]:
        async with self._async_client() as hq:
            return self._result(result_id, await hq.run(self._read(result_id)))

    def check(self, **kwargs: Any) -> Iterable[checks.CheckMessage]:
        """The OPTIONS are complete: URL (http or https) and TOKEN; no keys this backend ignores."""
        where = f"TASKS[{self.alias!r}]['OPTIONS']"
        if not self.url.startswith(("http://", "https://")):
            yield checks.Error(f"{where} needs URL, HQ's base URL (http:// or https://).", id="hq_client.E001")
        if not self.token:
            yield checks.Error(f"{where} needs TOKEN, an HQ personal access token.", id="hq_client.E002")
        concurrency = self.batch_concurrency
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            yield checks.Error(
                f"{where} BATCH_CONCURRENCY must be a whole number of requests, at least 1 (got {concurrency!r}).",
                id="hq_client.E003",
            )
        unknown = sorted(set(self.options) - OPTION_KEYS)
        if unknown:
            yield checks.Warning(
                f"{where} has keys RemoteBackend does not read: {unknown}",
                hint=f"It reads {sorted(OPTION_KEYS)}.",
                id="hq_client.W001",
            )

    # --- submits -----------------------------------------------------------------------------------------

    def _submit_many(
        self, task: Task[Any, Any], calls: Iterable[tuple[Sequence[Any], Mapping[str, Any]]]
    ) -> Program[list[BatchJob]]:
        """The batch submit of `task` once per call: the task validated and its fields made once,
        then only each call's `args`."""
        self.validate_task(task)
        fields = submission(**self._submission(task, (), {}))
        items: list[JobSubmission] = [{**fields, "args": self.job_args(task, a, kw)} for a, kw in calls]
        return Operations.jobs_submit_many.program(self.api, items, concurrency=self.batch_concurrency)

    def _submission(self, task: Task[Any, Any], args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The job that runs `task(*args, **kwargs)` on HQ: its module path is HQ's function name."""
        options = self.job_options(task)
        return {
            **options,
            "function": task.module_path,
            "args": self.job_args(task, args, kwargs),
            "defer_until": task.run_after,
            "correlation_id": options["correlation_id"] or None,
        }

    def _enqueued(self, task: Task[Any, T], job: Job | BatchJob) -> TaskResult[T]:
        result: TaskResult[T] = self.task_result(task, job)
        task_enqueued.send(type(self), task_result=result)
        return result

    # --- results -----------------------------------------------------------------------------------------

    def _read(self, result_id: str) -> Program[tuple[Job, list[JobEvent], HITLRequest | None] | None]:
        """The job, its events and (when rejected) its latest approval request; None when there is no such job."""
        try:
            job: Job = yield from Operations.job_get.program(self.api, result_id)
        except (NotFound, ValidationError):
            return None
        events = yield from collect(Operations.job_events.listing(self.api, result_id))
        approval = None
        if job["state"] == "rejected":
            requests = yield from collect(
                Operations.hitl_requests.listing(self.api, job_id=result_id, state=("rejected", "expired"))
            )
            approval = max(requests, key=lambda r: r["created_at"], default=None)
        return job, events, approval

    def _result(self, result_id: str, read: tuple[Job, list[JobEvent], HITLRequest | None] | None) -> TaskResult[Any]:
        if read is None:
            raise TaskResultDoesNotExist(result_id)
        job, events, approval = read
        try:
            task = import_string(job["function"])
        except ImportError:
            task = None
        if not isinstance(task, Task):
            raise TaskResultDoesNotExist(f"{result_id} is the job of {job['function']!r}, not a task of this project")
        return self.task_result(task, job, events, approval)


def enqueue_many(task: Task[Any, T], calls: Iterable[tuple[Sequence[Any], Mapping[str, Any]]]) -> list[TaskResult[T]]:
    """Enqueue `task` once per `(args, kwargs)` in `calls` through its RemoteBackend, in batch requests.

        results = enqueue_many(send_invoice, [((42,), {}), ((43,), {"copy": True})])

    One POST /v1/queue/jobs/batch per 1,000 calls; each call gets an idempotency key, so a retried
    request records no job twice. `task_enqueued` fires for each.
    """
    return _remote(task).enqueue_many(task, calls)


async def aenqueue_many(
    task: Task[Any, T], calls: Iterable[tuple[Sequence[Any], Mapping[str, Any]]]
) -> list[TaskResult[T]]:
    """`enqueue_many`, awaited."""
    return await _remote(task).aenqueue_many(task, calls)


def _remote(task: Task[Any, Any]) -> RemoteBackend:
    backend = task.get_backend()
    if not isinstance(backend, RemoteBackend):
        raise InvalidTask(f"{task.module_path} runs on {type(backend).__name__}, not hq_client.django.RemoteBackend")
    return backend
