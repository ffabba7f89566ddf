"""What the peer drivers share: the drain timings, written as JSON for bench/run.py.

Runs inside the throwaway venv (.run/bench-peers); no Django, no HQ code.
"""

from __future__ import annotations

import json
import time
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


def noop_body(drain: Drain) -> None:
    """The job body every side runs: nothing (HQ's `hq.noop` and bare ARQ's `noop` return None)."""
    drain.job_started()
