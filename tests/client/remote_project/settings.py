"""A separate Django project (no database, no HQ code) whose tasks run on HQ: TASKS names the
remote backend with HQ's URL and a token (from the environment the test gives it)."""

from __future__ import annotations

import os

import django

SECRET_KEY = "remote-project-test-key"
USE_TZ = True
INSTALLED_APPS = ["tests.client.taskapp"]
if django.VERSION < (6, 0):
    INSTALLED_APPS.insert(0, "django_tasks")
DATABASES: dict[str, dict[str, str]] = {}
TASKS = {
    "default": {
        "BACKEND": "hq_client.django.RemoteBackend",
        "QUEUES": ["default"],
        "OPTIONS": {"URL": os.environ["HQ_URL"], "TOKEN": os.environ["HQ_TOKEN"], "TIMEOUT_S": 30},
    }
}
