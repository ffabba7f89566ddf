"""Static files with DEBUG=0 and no collectstatic: WhiteNoise serves the apps' files, and the start-up
check warns when a file the admin needs is nowhere the web server looks (hq.checks)."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings
from django.core.checks import run_checks
from django.test import Client

pytestmark = pytest.mark.django_db


def _ids() -> list[str]:
    return [m.id for m in run_checks(tags=["staticfiles"]) if m.id]


def test_the_admin_stylesheet_is_served_with_debug_off_before_any_collectstatic(settings, tmp_path):
    settings.DEBUG = False
    settings.STATIC_ROOT = tmp_path / "never-collected"
    resp = Client().get("/static/admin/css/base.css")
    assert resp.status_code == 200
    assert resp["Content-Type"].startswith("text/css")
    assert b"--body-fg" in b"".join(resp.streaming_content)


def test_the_check_warns_when_static_files_are_nowhere_the_server_looks(settings, tmp_path):
    settings.STATIC_ROOT = tmp_path / "empty"
    settings.WHITENOISE_USE_FINDERS = False
    warnings = [m for m in run_checks(tags=["staticfiles"]) if m.id == "hq.W001"]
    assert len(warnings) == 1
    assert "admin/css/base.css" in warnings[0].msg and "collectstatic" in (warnings[0].hint or "")

    settings.WHITENOISE_USE_FINDERS = True
    assert "hq.W001" not in _ids()


def test_the_check_accepts_collected_files_without_finders(settings, tmp_path):
    for name in ("admin/css/base.css", "admin/js/core.js"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("/* collected */")
    settings.STATIC_ROOT = tmp_path
    settings.WHITENOISE_USE_FINDERS = False
    settings.HQ_DOCS_SIDECAR = False
    assert "hq.W001" not in _ids()


def test_the_docs_say_where_swagger_ui_comes_from_and_the_check_agrees(client):
    page = client.get("/v1/docs").content.decode()
    if django_settings.HQ_DOCS_SIDECAR:
        assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
        assert "cdn.jsdelivr.net" not in page
        assert "hq.W002" not in _ids()
        assert client.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js").status_code == 200
    else:
        assert "cdn.jsdelivr.net" in page
        assert "hq.W002" in _ids()
    assert client.get("/v1/redoc").status_code == 200
