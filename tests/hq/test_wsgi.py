"""The WSGI entry point loads every view up front and hides what it loaded from the collector."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

PROBE = """
import gc, sys
import hq.wsgi
print("queueapp.api.views" in sys.modules, gc.get_freeze_count())
"""


def test_importing_the_wsgi_application__loads_the_views_and_freezes_them():
    probe = [sys.executable, "-c", PROBE]
    out = subprocess.run(probe, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    views_loaded, frozen = out.stdout.split()
    assert views_loaded == "True"
    # A full collection would otherwise walk all of them (Django, DRF, HQ): about 170,000 objects.
    assert int(frozen) > 50_000
