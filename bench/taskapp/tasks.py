"""The no-op task the tasks bench enqueues and drains (django-tasks-db's side runs the same body)."""

from __future__ import annotations

from hq_client.django.compat import task


@task
def noop() -> None:
    """Do nothing."""
