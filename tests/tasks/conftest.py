"""The in-process backend's fixtures: TASKS on HQBackend with a test workspace."""

from __future__ import annotations

import pytest

from tests import factories


@pytest.fixture
def tasks_admin(transactional_db, settings) -> factories.Caller:
    """An admin of the workspace that TASKS' WORKSPACE names (tasks run on real, committed data)."""
    caller = factories.caller(admin=True)
    settings.TASKS = {
        "default": {
            "BACKEND": "queueapp.tasks_backend.HQBackend",
            "QUEUES": ["default"],
            "OPTIONS": {"WORKSPACE": caller.workspace.slug},
        }
    }
    return caller
