"""Delivery test fixtures (the loopback server and the Slack/Teams fixtures are in tests/conftest.py)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from delivery import services
from delivery.models import Delivery
from tests import factories


@pytest.fixture(autouse=True)
def _delivery_settings(settings) -> None:
    settings.HQ_DELIVERY_MAX_ATTEMPTS = 5
    settings.HQ_DELIVERY_TIMEOUT_S = 5.0


@pytest.fixture
def workspace(db):
    return factories.workspace()


@pytest.fixture
def make_delivery(workspace):
    """Create a delivery through the service, with a header and a short Markdown body."""

    def make(destination: dict[str, Any], *, body: str = "All *green* today.", **extra: Any) -> Delivery:
        return services.delivery_create(
            workspace=workspace,
            source_kind="schedule_fire",
            source_id=uuid.uuid4(),
            destination=destination,
            header="Daily digest · Mar 3, 2025, 9:00:00 AM CET",
            body=body,
            **extra,
        )

    return make
