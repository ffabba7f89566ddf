"""The django.tasks backend for a Django project whose tasks run on a remote HQ (extra: `django`)."""

from hq_client.django.backend import RemoteBackend, aenqueue_many, enqueue_many
from hq_client.django.task import RemoteTask

__all__ = ["RemoteBackend", "RemoteTask", "aenqueue_many", "enqueue_many"]
