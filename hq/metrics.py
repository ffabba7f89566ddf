"""Prometheus metrics for every HQ process, kept in Redis so that any number of processes on any
number of machines add up to one set of series.

prometheus-client's own multiprocess mode needs a directory shared by every process, which workers
on other machines do not have. Here counters and histogram buckets are Redis hash fields instead
(`HINCRBY`/`HINCRBYFLOAT` under `hq.redis.key("metrics", name)`); gauges (queue depth, live
workers, schedules by state, HITL pending) are read from PostgreSQL at scrape time by sources that
the apps register with `register_gauge_source` in their `AppConfig.ready()`; `render()` turns both
into the text format through a custom collector.

Recording is cheap and fails open: a call adds to an in-process buffer (a dict update under a
lock) and a daemon thread flushes it to Redis every `HQ_METRICS_FLUSH_S` seconds in one pipeline.
A flush that finds Redis away keeps the increments for the next try; no call here ever raises
into its caller, and none waits on the network.
"""

from __future__ import annotations

import atexit
import bisect
import functools
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from django.conf import settings

from hq import redis as hq_redis

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

logger = logging.getLogger(__name__)

#: Seconds: from 5 ms (a no-op job, a fast request) to an hour (a long job, a late fire).
DURATION_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
)
#: Buffered fields kept across failed flushes at most; past this a Redis outage drops increments.
MAX_PENDING_FIELDS = 50_000
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@dataclass(frozen=True)
class Spec:
    """One counter or histogram: its name (without `_total`), help text and label names."""

    name: str
    kind: Literal["counter", "histogram"]
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = DURATION_BUCKETS


SPECS: dict[str, Spec] = {
    s.name: s
    for s in (
        Spec(
            "hq_job_transitions", "counter", "Job state changes, by the state entered.", ("queue", "function", "state")
        ),
        Spec(
            "hq_job_wait_seconds",
            "histogram",
            "From a job attempt's due time to its start on a worker.",
            ("queue", "function"),
        ),
        Spec(
            "hq_job_run_seconds",
            "histogram",
            "From an attempt's start to its end, by the state it ended in.",
            ("queue", "function", "state"),
        ),
        Spec(
            "hq_job_holds",
            "counter",
            "Starts a concurrency or rate limit held back (the job stays waiting), by the limit's kind.",
            ("queue", "function", "limit"),
        ),
        Spec("hq_worker_heartbeats", "counter", "Worker heartbeats recorded."),
        Spec("hq_scheduler_iterations", "counter", "Passes of the scheduler loop."),
        Spec("hq_scheduler_fires", "counter", "Schedule fires written by the scheduler loop."),
        Spec(
            "hq_schedule_fire_lag_seconds",
            "histogram",
            "From a fire's slot to the start of its job.",
        ),
        Spec(
            "hq_delivery_attempts",
            "counter",
            "Delivery attempts, by destination kind and outcome.",
            ("destination", "outcome"),
        ),
        Spec(
            "hq_http_requests",
            "counter",
            "HTTP requests, by route pattern, method and status.",
            ("route", "method", "status"),
        ),
        Spec(
            "hq_http_request_duration_seconds",
            "histogram",
            "Time to answer an HTTP request, by route pattern and method.",
            ("route", "method"),
        ),
    )
}


# --- recording -------------------------------------------------------------------------------------


class _Buffer:
    """Increments waiting for the next flush: {(metric, field): amount}."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: dict[tuple[str, str], float] = {}
        self.thread: threading.Thread | None = None

    def forked(self) -> None:
        """In a forked child: the parent flushes what it buffered; this process starts afresh."""
        self.lock, self.pending, self.thread = threading.Lock(), {}, None

    def add(self, items: Iterable[tuple[str, str, float]]) -> None:
        with self.lock:
            for metric, fld, amount in items:
                key = (metric, fld)
                self.pending[key] = self.pending.get(key, 0) + amount
            started = None
            if self.thread is None:
                started = self.thread = threading.Thread(target=_flush_forever, name="hq-metrics-flush", daemon=True)
        if started is not None:
            started.start()

    def take(self) -> dict[tuple[str, str], float]:
        with self.lock:
            taken, self.pending = self.pending, {}
        return taken

    def give_back(self, taken: dict[tuple[str, str], float]) -> None:
        with self.lock:
            if len(self.pending) + len(taken) > MAX_PENDING_FIELDS:
                logger.warning("metrics: Redis unreachable for long; dropping %d buffered increments", len(taken))
                return
            for key, amount in taken.items():
                self.pending[key] = self.pending.get(key, 0) + amount


_buffer = _Buffer()
# Reset in the child at fork (`_forked`), rather than comparing pids on every increment (a worker
# makes four per job).


@functools.lru_cache(maxsize=4096)
def _field(values: tuple[str, ...], suffix: str | None = None) -> str:
    """The hash field of a series (label values, then a histogram part); cached: a worker records
    the same few series for every job."""
    parts = [str(v) for v in values]
    if suffix is not None:
        parts.append(suffix)
    return json.dumps(parts, separators=(",", ":"))


def inc(name: str, labels: tuple[str, ...] = (), amount: float = 1) -> None:
    """Add `amount` to counter `name` with these label values (in the spec's order). Never raises."""
    try:
        spec = SPECS[name]
        if spec.kind != "counter" or len(labels) != len(spec.labels):
            raise ValueError(f"bad counter call {name}{labels}")
        _buffer.add([(name, _field(labels), amount)])
    except Exception:  # metrics must never break the caller
        logger.exception("metrics: could not record %s", name)


def observe(name: str, labels: tuple[str, ...], value: float) -> None:
    """Record one observation of histogram `name`. Never raises."""
    try:
        spec = SPECS[name]
        if spec.kind != "histogram" or len(labels) != len(spec.labels):
            raise ValueError(f"bad histogram call {name}{labels}")
        value = max(float(value), 0.0)
        index = bisect.bisect_left(spec.buckets, value)  # first bucket whose bound is >= value
        _buffer.add(
            [
                (name, _field(labels, f"b{index}"), 1),
                (name, _field(labels, "sum"), value),
                (name, _field(labels, "count"), 1),
            ]
        )
    except Exception:
        logger.exception("metrics: could not record %s", name)


_flush_lock = threading.Lock()


def _forked() -> None:
    """In a forked child: a fresh buffer, and a fresh flush lock (the parent's flush thread may have
    held it at the fork, and no thread of the child would ever release it)."""
    global _flush_lock
    _buffer.forked()
    _flush_lock = threading.Lock()


os.register_at_fork(after_in_child=_forked)


def flush() -> bool:
    """Write this process's buffered increments to Redis in one pipeline; False when Redis is away."""
    with _flush_lock:
        return _flush()


def _flush() -> bool:
    taken = _buffer.take()
    if not taken:
        return True
    try:
        pipe = hq_redis.client().pipeline(transaction=False)
        for (metric, fld), amount in taken.items():
            key = hq_redis.key("metrics", metric)
            if float(amount).is_integer():
                pipe.hincrby(key, fld, int(amount))
            else:
                pipe.hincrbyfloat(key, fld, float(amount))
        pipe.execute()
        return True
    except Exception as exc:  # Redis down, a timeout: keep the increments
        logger.warning("metrics: flush failed (%s); will retry", exc.__class__.__name__)
        _buffer.give_back(taken)
        return False


def _flush_forever() -> None:
    while True:
        time.sleep(max(float(getattr(settings, "HQ_METRICS_FLUSH_S", 1.0)), 0.05))
        flush()  # a thread lives only in the process that started it: a forked child starts its own


atexit.register(flush)


# --- what HQ records ---------------------------------------------------------------------------------
# Named calls, so that call sites stay one short line and label orders live here.


def job_transition(queue: str, function: str, state: str, count: int = 1) -> None:
    """`count` jobs entered `state` (submit, cancel, retry, approval... through the services)."""
    inc("hq_job_transitions", (queue, function, state), count)


def job_started(queue: str, function: str, wait_s: float | None = None) -> None:
    """A worker started an attempt, `wait_s` after it was due."""
    inc("hq_job_transitions", (queue, function, "running"))
    if wait_s is not None:
        observe("hq_job_wait_seconds", (queue, function), wait_s)


def job_finished(queue: str, function: str, state: str, run_s: float) -> None:
    """An attempt ended after `run_s` seconds, moving the job to `state` (succeeded, deferred...)."""
    inc("hq_job_transitions", (queue, function, state))
    observe("hq_job_run_seconds", (queue, function, state), run_s)


def job_held(queue: str, function: str, limit: str) -> None:
    """A limit (`limit`: concurrency or rate) kept an attempt from starting; never labelled by key."""
    inc("hq_job_holds", (queue, function, limit))


def worker_heartbeat() -> None:
    """A worker recorded its heartbeat."""
    inc("hq_worker_heartbeats")


def scheduler_iteration(fired: int = 0) -> None:
    """The scheduler loop made one pass, writing `fired` fires."""
    inc("hq_scheduler_iterations")
    if fired:
        inc("hq_scheduler_fires", (), fired)


def schedule_fire_lag(lag_s: float) -> None:
    """A fire's job started `lag_s` seconds after its slot."""
    observe("hq_schedule_fire_lag_seconds", (), lag_s)


def delivery_attempt(destination: str, outcome: str) -> None:
    """A delivery attempt to a destination kind ended with `outcome` (delivered, retry, failed)."""
    inc("hq_delivery_attempts", (destination, outcome))


def http_request(route: str, method: str, status: int, duration_s: float) -> None:
    """A request to a route pattern (never a raw path: no ids in labels) was answered."""
    method = method if method in HTTP_METHODS else "other"
    inc("hq_http_requests", (route, method, str(status)))
    observe("hq_http_request_duration_seconds", (route, method), duration_s)


# --- gauges from the database, registered by the apps ----------------------------------------------


@dataclass
class Gauge:
    """A gauge family computed at scrape time: samples are (label values, value)."""

    name: str
    help: str
    labels: tuple[str, ...] = ()
    samples: list[tuple[tuple[str, ...], float]] = field(default_factory=list)


GaugeSource = Callable[[], Iterable[Gauge]]
_gauge_sources: dict[str, GaugeSource] = {}


def register_gauge_source(name: str, source: GaugeSource) -> None:
    """Have /metrics call `source()` for gauges (read from PostgreSQL) at every scrape.

    Apps register from their `AppConfig.ready()`: `hq` itself imports none of the apps.
    """
    _gauge_sources[name] = source


def gauge_sources() -> dict[str, GaugeSource]:
    """The registered gauge sources by name, in name order."""
    return dict(sorted(_gauge_sources.items()))


# --- rendering -----------------------------------------------------------------------------------------


def _read_redis() -> dict[str, dict[str, float]] | None:
    try:
        pipe = hq_redis.client().pipeline(transaction=False)
        for name in SPECS:
            pipe.hgetall(hq_redis.key("metrics", name))
        raw = pipe.execute()
    except Exception as exc:
        logger.warning("metrics: cannot read counters from Redis (%s)", exc.__class__.__name__)
        return None
    return {name: {k.decode(): float(v) for k, v in fields.items()} for name, fields in zip(SPECS, raw, strict=True)}


def _families(stored: dict[str, dict[str, float]]) -> Iterator[Metric]:
    from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

    for name, spec in SPECS.items():
        fields = stored.get(name, {})
        if spec.kind == "counter":
            counter = CounterMetricFamily(name, spec.help, labels=spec.labels)
            for fld, value in sorted(fields.items()):
                counter.add_metric(json.loads(fld), value)
            yield counter
            continue
        series: dict[tuple[str, ...], dict[str, float]] = {}
        for fld, value in fields.items():
            *labels, suffix = json.loads(fld)
            series.setdefault(tuple(labels), {})[suffix] = value
        family = HistogramMetricFamily(name, spec.help, labels=spec.labels)
        bounds = [*(repr(float(b)) for b in spec.buckets), "+Inf"]
        for labels, parts in sorted(series.items()):
            running, buckets = 0.0, []
            for i, bound in enumerate(bounds):
                running += parts.get(f"b{i}", 0.0)
                buckets.append((bound, running))
            family.add_metric(list(labels), buckets, parts.get("sum", 0.0))
        yield family


class HQCollector:
    """Counters and histograms from Redis, gauges from the registered sources."""

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        stored = _read_redis()
        up = GaugeMetricFamily("hq_metrics_store_up", "1 when the counters could be read from Redis.")
        up.add_metric([], 0.0 if stored is None else 1.0)
        yield up
        if stored is not None:
            yield from _families(stored)
        for source_name, source in gauge_sources().items():
            try:
                gauges = list(source())
            except Exception:  # one failing source must not hide the others
                logger.exception("metrics: gauge source %s failed", source_name)
                continue
            for gauge in gauges:
                family = GaugeMetricFamily(gauge.name, gauge.help, labels=gauge.labels)
                for labels, value in gauge.samples:
                    family.add_metric(list(labels), value)
                yield family


def render() -> bytes:
    """The Prometheus text exposition of every HQ metric."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(HQCollector())
    return generate_latest(registry)


def reset_buffer() -> None:
    """Drop what this process has buffered, after any flush in flight has finished (tests)."""
    with _flush_lock:
        _buffer.take()
