#!/usr/bin/env bash
# The django.tasks backends' tests (tests/tasks, and the client's tests/client) on Django 6.1, where
# the Tasks framework is built in (django.tasks), in a venv of their own: requirements.lock with
# Django swapped for 6.1 (no backport, no type stubs). `make test` keeps testing the lock (5.2).
# The venv is cached under .run/ and rebuilt when the lock or the client's pyproject changes.
set -euo pipefail
cd "$(dirname "$0")/.."

DJANGO_61=${DJANGO_61:-6.1.3}
VENV=.run/django61

python_312_or_313() {
    local candidate
    for candidate in python3.12 python3.13 "$HOME"/.pyenv/versions/3.12*/bin/python "$HOME"/.pyenv/versions/3.13*/bin/python; do
        if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; assert sys.version_info[:2] in ((3, 12), (3, 13))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    echo "test-django61: no Python 3.12 or 3.13 found (PATH or ~/.pyenv/versions)" >&2
    return 1
}

stamp="$VENV/.installed-$(cat requirements.lock clients/python/pyproject.toml | sha1sum | cut -c1-12)-$DJANGO_61"
if [ ! -f "$stamp" ]; then
    python=$(python_312_or_313)
    rm -rf "$VENV"
    "$python" -m venv "$VENV"
    grep -v -i -E '^(django|django-tasks|django-stubs|django-stubs-ext|djangorestframework-stubs|mypy|mypy_extensions|librt|types-[a-z-]+)==' \
        requirements.lock > "$VENV/requirements.txt"
    echo "Django==$DJANGO_61" >> "$VENV/requirements.txt"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -r "$VENV/requirements.txt"
    "$VENV/bin/python" -m pip install -q --no-deps -e . -e clients/python
    touch "$stamp"
fi
"$VENV/bin/python" -c 'import django, sys; assert django.VERSION[:2] == (6, 1), django.VERSION; print("Django", django.__version__, "on Python", sys.version.split()[0])'
if "$VENV/bin/python" -c 'import django_tasks' 2>/dev/null; then
    echo "test-django61: the backport is installed; the run must use django.tasks" >&2
    exit 1
fi

paths=(tests/tasks)
if [ -d tests/client ]; then
    paths+=(tests/client)
fi
exec "$VENV/bin/python" -m pytest -n 2 -m "not soak" -p no:cacheprovider "${paths[@]}" "$@"
