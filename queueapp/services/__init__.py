"""Writes for the queue, one module per idea; the queue's reads are in `queueapp.selectors`.

- `jobs`: what a client does to a job (submit one or a batch, cancel, retry) and the one service
  that changes a job's state, `job_transition`;
- `hitl`: deciding a job that waits for approval (approve, reject, expire);
- `engine`: the relay, worker heartbeats, the reaper, and pausing queues.

Every public name is re-exported here, so `from queueapp import services` keeps working.
"""

from queueapp.services.engine import (
    queue_pause,
    queue_resume,
    reap_pass,
    relay_pass,
    worker_heartbeat,
    worker_stopped,
    workers_mark_dead,
)
from queueapp.services.hitl import HITLStateConflict, hitl_decide, hitl_expire_departed, hitl_expire_due
from queueapp.services.jobs import (
    MAX_ARGS_BYTES,
    MAX_BATCH,
    MAX_TEXT_CHARS,
    JobStateConflict,
    Submission,
    Submitted,
    function_for_submit,
    job_args_validate,
    job_cancel,
    job_push,
    job_retry,
    job_submit,
    job_submit_outcome,
    job_submit_row,
    job_transition,
    jobs_submit_many,
    jobs_submit_many_outcomes,
)

__all__ = [
    "MAX_ARGS_BYTES",
    "MAX_BATCH",
    "MAX_TEXT_CHARS",
    "HITLStateConflict",
    "JobStateConflict",
    "Submission",
    "Submitted",
    "function_for_submit",
    "hitl_decide",
    "hitl_expire_departed",
    "hitl_expire_due",
    "job_args_validate",
    "job_cancel",
    "job_push",
    "job_retry",
    "job_submit",
    "job_submit_outcome",
    "job_submit_row",
    "job_transition",
    "jobs_submit_many",
    "jobs_submit_many_outcomes",
    "queue_pause",
    "queue_resume",
    "reap_pass",
    "relay_pass",
    "worker_heartbeat",
    "worker_stopped",
    "workers_mark_dead",
]
