"""The WSGI entry point loads every view up front, hides what it loaded from the collector and
collects the young generation less often."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

PROBE = """
import gc, sys
import hq.wsgi
print("queueapp.api.views" in sys.modules, gc.get_freeze_count(), gc.get_threshold()[0])
"""


def test_importing_the_wsgi_application__loads_the_views_freezes_them_and_sets_the_young_threshold():
    probe = [sys.executable, "-c", PROBE]
    out = subprocess.run(probe, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    views_loaded, frozen, young_threshold = out.stdout.split()
    assert views_loaded == "True"
    assert int(young_threshold) == 7000
    # A full collection would otherwise walk all of them (Django, DRF, HQ): about 170,000 objects.
    assert int(frozen) > 50_000
