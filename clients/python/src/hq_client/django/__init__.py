"""HQ's django.tasks side (extra: `django`): the task class both HQ backends use, and the remote backend.

`HQTask`/`hq_task` and `HQTaskBackend` are shared with HQ's in-process backend
(`queueapp.tasks_backend.HQBackend`); `RemoteBackend` runs a separate project's tasks on a remote HQ.
"""

from hq_client.django.backend import RemoteBackend, aenqueue_many, enqueue_many
from hq_client.django.base import HQTaskBackend
from hq_client.django.task import HQTask, hq_task

__all__ = ["HQTask", "HQTaskBackend", "RemoteBackend", "aenqueue_many", "enqueue_many", "hq_task"]
