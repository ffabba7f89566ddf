"""What the peer drivers share: the drain timings, written as JSON for bench/run.py.

Runs inside the throwaway venv (.run/bench-peers); no Django, no HQ code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field

T_PROC = time.time()


@dataclass
class Drain:
    """Wall-clock times in the worker process, as bench/arq_worker.py records bare ARQ's.

    first_start: the first job body entered. last_finish: the write that recorded the last job's
    success returned (committed). finished counts jobs whose success such a write recorded.
    """

    n: int
    first_start: float | None = None
    last_finish: float | None = None
    started: int = 0
    finished: int = 0
    writes: int = 0
    t_proc: float = T_PROC
    t_ready: float | None = None
    t_exit: float | None = None
    db: dict = field(default_factory=dict)

    def job_started(self) -> None:
        if self.first_start is None:
            self.first_start = time.time()
        self.started += 1

    def committed(self, succeeded: int) -> None:
        """Call right after the peer's status write has returned: it is committed by then."""
        self.last_finish = time.time()
        self.finished += succeeded
        self.writes += 1

    def write(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump(asdict(self), f)


def timed_calls(call: Callable[[], object], n: int, around: Callable[[], AbstractContextManager] | None) -> float:
    """Seconds for `n` calls of `call` on this thread: each alone, or all inside one `around()`
    (a transaction, whose end is timed too). The tasks bench's enqueue loop, on both sides."""
    t0 = time.perf_counter()
    with around() if around is not None else contextlib.nullcontext():
        for _ in range(n):
            call()
    return time.perf_counter() - t0


def noop_body(drain: Drain) -> None:
    """The job body every side runs: nothing (HQ's `hq.noop` and bare ARQ's `noop` return None)."""
    drain.job_started()


def cli(
    install: Callable[[str], Awaitable[None]],
    enqueue: Callable[[str, int], Awaitable[dict]],
    drain: Callable[[str, int, int | None], Drain],
    option: tuple[str, str],
    run: Callable = asyncio.run,
) -> int:
    """A driver's command line: `install`, `enqueue --n N` (prints its JSON), `drain --n N --out
    FILE [OPTION VALUE]`, each with `--dsn`; `option` is the peer's one setting (flag, help)."""
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["install", "enqueue", "drain"])
    p.add_argument("--dsn", required=True)
    p.add_argument("--n", type=int, default=0)
    p.add_argument(option[0], dest="option", type=int, default=None, help=option[1])
    p.add_argument("--out", default=None)
    a = p.parse_args()
    if a.command == "install":
        run(install(a.dsn))
    elif a.command == "enqueue":
        print(json.dumps(run(enqueue(a.dsn, a.n))))
    else:
        drain(a.dsn, a.n, a.option).write(a.out)
    return 0
