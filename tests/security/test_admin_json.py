"""JSON in the admin: rows deeper than the input guard allows still render, and JSON typed into an
admin form passes the same guard as an API body.

The API refuses bodies nested deeper than MAX_JSON_DEPTH, but a row stored before that rule (JSON
900 levels deep once got in through `Content-Type: */*`) or written by hand may be deeper. The
job's and its HITL request's admin pages answered 500 (RecursionError from the indented dump);
now every page renders, clipped at MAX_JSON_DEPTH with a marker where the rest was left out.
"""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test import Client

from hq.display import CLIPPED, clip_json, stored_json
from hq.jsonguard import MAX_JSON_DEPTH
from hq.models import Note, StoredQuery, User
from tests.security import world as world_mod

pytestmark = pytest.mark.django_db

DEPTH = 900


def deep_json(depth: int) -> str:
    """An object holding `depth` nested arrays: the args `{"a": [[...]]}` the issue stored, 900 deep."""
    return '{"to": "ops", "a": ' + "[" * depth + '"bottom"' + "]" * depth + "}"


def store_deep_rows(w: world_mod.World, depth: int = DEPTH) -> None:
    """Write the deep value with SQL, as an old row would hold it: nothing in Python recurses."""
    value = deep_json(depth)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE queueapp_job SET args = %s::jsonb, result = %s::jsonb", [value, value])
        cursor.execute("UPDATE queueapp_hitlrequest SET args = %s::jsonb, approved_args = %s::jsonb", [value, value])
        cursor.execute("UPDATE schedules_schedule SET args = args || %s::jsonb", [value])  # keeps its own keys


def superuser_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root@example.com", "pw-for-tests-only"))
    return client


def pages(w: world_mod.World) -> list[str]:
    hitl = w.hitl.pk
    return [
        "/admin/queueapp/job/",
        f"/admin/queueapp/job/{w.job.pk}/change/",  # args and result
        "/admin/queueapp/hitlrequest/",
        f"/admin/queueapp/hitlrequest/{hitl}/change/",  # args and approved args
        f"/admin/queueapp/hitlrequest/{hitl}/approve/",  # the confirmation shows the args
        f"/admin/queueapp/hitlrequest/{hitl}/reject/",
        "/admin/schedules/schedule/",
        f"/admin/schedules/schedule/{w.schedule.pk}/change/",
        f"/admin/schedules/schedule/{w.task.pk}/change/",
        "/admin/ops/dashboard/",
    ]


@pytest.mark.parametrize("depth", [DEPTH, 5_000])
def test_every_admin_page_of_a_deep_row_renders_clipped(depth):
    """900 levels got in through the side door; 5,000 only by hand (nothing in Python can load it)."""
    w = world_mod.build()
    store_deep_rows(w, depth)
    client = superuser_client()
    problems = []
    for url in pages(w):
        resp = client.get(url)
        if resp.status_code != 200:
            problems.append(f"{url}: {resp.status_code}")
        elif "/change/" in url or url.endswith(("/approve/", "/reject/")):
            text = resp.content.decode()
            if CLIPPED not in text or "&quot;to&quot;: &quot;ops&quot;" not in text and '"to": "ops"' not in text:
                problems.append(f"{url}: the clipped value is not shown")
            elif f"Nested {depth + 1:,} levels deep" not in text:
                problems.append(f"{url}: no note saying levels were left out")
    assert not problems, "\n".join(problems)


def test_a_deep_row_in_the_job_page_shows_the_levels_that_fit():
    w = world_mod.build()
    store_deep_rows(w)
    text = superuser_client().get(f"/admin/queueapp/job/{w.job.pk}/change/").content.decode()
    # The value's own object is level 1, "a" level 2: 63 arrays are shown, the 64th is the marker.
    assert text.count("[\n") >= 63
    assert "bottom" not in text


def test_stored_text_is_clipped_as_values_are():
    for value in ({"a": [1, {"b": "c"}], "s": "[[{{"}, [[[[[]]]]], "x", None):
        text = json.dumps(value)
        assert stored_json(text) == json.dumps(clip_json(value), indent=2, sort_keys=True)
    deep = '{"z": 1, "s": "]]", "a": ' + "[" * 100 + '"x\\"]"' + "]" * 100 + "}"
    shown = json.loads(stored_json(deep))
    assert shown["z"] == 1 and shown["s"] == "]]"
    inner = shown["a"]
    for _ in range(MAX_JSON_DEPTH - 2):
        (inner,) = inner
    assert inner == [CLIPPED], inner  # the 64th level: what clip_json leaves of the value


def test_clip_json_keeps_what_fits_and_marks_what_does_not():
    assert clip_json({"a": [1, {"b": "c"}]}) == {"a": [1, {"b": "c"}]}
    assert clip_json({"a": [[1]]}, max_depth=2) == {"a": [CLIPPED]}
    assert clip_json([[[]]], max_depth=3) == [[[]]]
    assert clip_json("text", max_depth=0) == "text"


# --- JSON typed into the admin's forms ---------------------------------------------------------------


def note_form(note: Note, tags: str) -> dict:
    created = note.created_at
    return {
        "workspace": str(note.workspace_id),
        "author": str(note.author_id),
        "title": note.title,
        "tags": tags,
        "created_at_0": created.strftime("%Y-%m-%d"),
        "created_at_1": created.strftime("%H:%M:%S"),
    }


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ("[" * 50_000 + "]" * 50_000, "nested too deeply"),
        ("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), "nested too deeply"),
        ('["a\\u0000b"]', "NUL"),
        ('["\\ud800"]', "surrogate"),
        ('["a", NaN]', "not valid JSON"),
        ('["a"', "not valid JSON"),
    ],
)
def test_a_hostile_json_input_is_a_form_error_not_a_500(api, tags, message):
    w = world_mod.build()
    resp = api.post("/v1/notes", {"title": "t", "tags": ["keep"]}, format="json", **w.admin.headers)
    note = Note.objects.get(pk=resp.json()["id"])
    page = superuser_client().post(f"/admin/hq/note/{note.pk}/change/", note_form(note, tags))
    assert page.status_code == 200  # the form again, with the error
    errors = page.context["adminform"].form.errors
    assert message in str(errors["tags"]), errors
    note.refresh_from_db()
    assert note.tags == ["keep"]


def test_a_valid_json_input_is_saved(api):
    w = world_mod.build()
    resp = api.post("/v1/notes", {"title": "t", "tags": ["keep"]}, format="json", **w.admin.headers)
    note = Note.objects.get(pk=resp.json()["id"])
    page = superuser_client().post(f"/admin/hq/note/{note.pk}/change/", note_form(note, '["a", "b"]'))
    assert page.status_code == 302, page.context["adminform"].form.errors if page.context else page
    note.refresh_from_db()
    assert note.tags == ["a", "b"]


def test_a_stored_query_form_is_guarded_too(api):
    w = world_mod.build()
    query = StoredQuery.objects.get(pk=w.query_id)
    form = {
        "workspace": str(query.workspace_id),
        "owner": str(query.owner_id),
        "name": query.name,
        "filters": '{"text": ' + "[" * 5000 + "]" * 5000 + "}",
    }
    page = superuser_client().post(f"/admin/hq/storedquery/{query.pk}/change/", form)
    assert page.status_code == 200 and "nested too deeply" in str(page.context["adminform"].form.errors)
