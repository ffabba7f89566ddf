"""The ops views' registries are filled by `AppConfig.ready()`, whatever a process imports after."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT

# Run in a fresh interpreter: in the test process, test modules have imported half of HQ already.
PROBE = """
import json, django
django.setup()
from hq import metrics
from queueapp import retention
from queueapp.observability import registry
print(json.dumps({
    "sections": list(registry.sections()),
    "panels": [f"{p.__module__}.{p.__name__}" for p in registry.panels()],
    "gauges": list(metrics.gauge_sources()),
    "pruners": sorted(retention.pruners()),
}))
"""


def test_registries__filled_by_setup_alone():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "hq.test_settings"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {
        "sections": ["schedules"],
        "panels": ["queueapp.observability.dashboard.queue_panels", "schedules.observability.schedule_panels"],
        "gauges": ["queue", "schedules"],
        "pruners": ["depth_samples", "jobs", "schedule_fires"],
    }
