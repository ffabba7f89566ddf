"""Every content type the API's parser accepts gets the same input guard as `application/json`.

DRF hands a body to the JSON parser when `application/json` matches the request's Content-Type,
which `application/*`, `*/*` and `*/json` do too. Those bodies once skipped the guard: a NUL in
args answered 500, JSON 50,000 levels deep answered 500, and JSON 900 deep was stored. Anything
the parser does not accept is refused with 415 and changes nothing.
"""

from __future__ import annotations

import json

import pytest

from hq.jsonguard import MAX_JSON_DEPTH, json_depth
from queueapp.models import HITLRequest, Job
from tests.security import test_bad_input as bad
from tests.security import world as world_mod
from tests.security.content_types import ACCEPTED, REFUSED

pytestmark = pytest.mark.django_db


@pytest.fixture
def w() -> world_mod.World:
    return world_mod.build()


def post(api, w: world_mod.World, path: str, raw: str | bytes, content_type: str):
    return api.generic("POST", path.format(**w.path_values()), raw, content_type, **w.admin.headers)


@pytest.mark.parametrize("content_type", ACCEPTED)
def test_an_accepted_type_is_parsed_as_json(api, w, content_type):
    resp = post(
        api, w, "/v1/queue/jobs", json.dumps({"function": "hq.echo", "args": {"a": [1, {"b": "c"}]}}), content_type
    )
    assert resp.status_code == 202, resp.content
    assert Job.objects.get(pk=resp.json()["id"]).args == {"a": [1, {"b": "c"}]}


@pytest.mark.parametrize("content_type", REFUSED)
def test_any_other_type_is_415_and_writes_nothing(api, w, content_type):
    before = bad._state()
    raw = json.dumps({"function": "hq.echo", "args": {"a": 1}}).encode("utf-16" if "16" in content_type else "utf-8")
    error = bad.assert_refused(post(api, w, "/v1/queue/jobs", raw, content_type), 415, "unsupported_media_type")
    assert "application/json" in error["message"] or "UTF-8" in error["message"], error
    assert bad._state() == before


def test_a_body_without_content_type_is_415_saying_what_to_send(api, w):
    before = bad._state()
    error = bad.assert_refused(post(api, w, "/v1/rooms", '{"name": "x"}', ""), 415, "unsupported_media_type")
    assert "no Content-Type" in error["message"] and "application/json" in error["message"], error
    assert bad._state() == before


# The reproductions, with the side-door types.
SIDE_DOORS = ["application/*", "*/*"]


@pytest.mark.parametrize("content_type", SIDE_DOORS)
def test_nul_in_args_is_400(api, w, content_type):
    before = bad._state()
    bad.assert_refused(post(api, w, "/v1/queue/jobs", bad.job(args={"a": "x\x00y"}), content_type), 400, "invalid")
    assert bad._state() == before


@pytest.mark.parametrize("content_type", SIDE_DOORS)
@pytest.mark.parametrize("depth", [900, 50_000])
def test_deep_json_is_400_and_not_stored(api, w, content_type, depth):
    before = bad._state()
    resp = post(api, w, "/v1/queue/jobs", bad.job_raw('{"a": ' + bad.nested(depth) + "}"), content_type)
    bad.assert_refused(resp, 400, "malformed_json")
    assert bad._state() == before
    gated = bad.job_raw('{"a": ' + bad.nested(depth) + "}").replace("hq.echo", "tests.gated")
    bad.assert_refused(post(api, w, "/v1/queue/jobs", gated, content_type), 400, "malformed_json")
    assert HITLRequest.objects.count() == 1  # the world's own


@pytest.mark.parametrize("content_type", ACCEPTED[1:])
def test_every_hostile_body_is_refused_as_under_application_json(api, w, content_type):
    """test_bad_input's whole table, sent with each other accepted type: the same status and code."""
    problems = []
    for name, method, path, make, status, code in bad.CASES:
        before = bad._state()
        resp = bad.send(api, w, method, path, raw=make(w), content_type=content_type)
        body = resp.json() if resp["Content-Type"].startswith("application/json") else {}
        got_code = body.get("error", {}).get("code")
        if resp.status_code != status or (code and got_code != code) or bad._state() != before:
            problems.append(f"{name}: {resp.status_code} {got_code} (expected {status} {code})")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("{}", 1),
        ("[[], [[]]]", 3),
        ('{"a": "[[[[{{{{"}', 1),  # brackets in strings do not count
        ('["\\"[[[", ["\\\\", [1]]]', 3),  # nor do escaped quotes end a string
        ('"' + '\\"' * 1000 + "[[[", 0),  # an unterminated string runs to the end
        ("1", 0),
    ],
)
def test_depth_is_counted_without_parsing(text, depth):
    assert json_depth(text) == depth


def test_a_megabyte_of_open_brackets_is_refused_not_recursed(api, w):
    raw = "[" * (1024 * 1024 - 1)
    for content_type in ["application/json", "*/*"]:
        bad.assert_refused(post(api, w, "/v1/rooms", raw, content_type), 400, "malformed_json")
    assert json_depth(raw) > MAX_JSON_DEPTH
