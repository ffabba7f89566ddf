"""`make run` without PostgreSQL: the same engine on SQLite, with a real burst worker."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT


def manage(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_runworker_burst_on_sqlite(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "hq.settings",
        "DEBUG": "1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'hq.sqlite3'}",
        "HQ_REDIS_PREFIX": f"hqsqlite:{os.getpid()}:",
        "HQ_PLUGINS": "tests.plugin",
    }
    env["REDIS_URL"] = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/13"
    manage(env, "migrate", "-v", "0")
    submit = (
        "from hq import services as h; from queueapp import services as q\n"
        "t = h.token_provision(email='lite@example.com', workspace='lite', admin=True).token\n"
        "ids = [q.job_submit(workspace=t.workspace, owner=t.user, submission=q.Submission(function=f, args=a))[0].id"
        " for f, a in [('hq.echo', {'n': 1}), ('tests.flaky', {'fail_times': 1}), ('tests.sync_echo', {})]]\n"
        "print(' '.join(str(i) for i in ids))"
    )
    ids = manage(env, "shell", "-c", submit).split()[-3:]
    manage(env, "runworker", "--burst")
    check = (
        "from queueapp.models import Job\n"
        f"print(sorted((j.function, j.state, j.attempts) for j in Job.objects.filter(pk__in={ids!r})))"
    )
    out = manage(env, "shell", "-c", check).strip().splitlines()[-1]
    assert out == str(
        sorted([("hq.echo", "succeeded", 1), ("tests.flaky", "succeeded", 2), ("tests.sync_echo", "succeeded", 1)])
    )
