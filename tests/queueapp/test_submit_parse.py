"""`submit_parse` (the fast path) and `JobSubmitIn` (the schema) must agree on every body.

And `JobOut`'s hand-written rendering must equal what DRF renders from the declared fields.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework import serializers

from hq import clock
from queueapp.api.serializers import JobOut, JobSubmitIn, submit_parse
from queueapp.models import Job
from queueapp.services import Submission
from tests import factories

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**9),
    st.integers(min_value=-102, max_value=102),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e20, 3.0, -0.0, 2.5]),
    st.text(max_size=8),
    st.sampled_from(
        [
            "",
            " ",
            "hq.echo",
            "  hq.echo  ",
            "default",
            "Bad Queue",
            "mail\n",
            "a" * 65,
            "x" * 201,
            "3",
            "3.0",
            "3.5",
            "1e3",
            "1E0",
            " 3",
            "3 ",
            "0x10",
            "1_000",
            "nan",
            "true",
            "no",
            "on",
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00+01:00",
            "yesterday",
            "a\x00b",
            "customer:42",
            "tab\tkey",
            "del\x7f",
            "\ud800",
            "a\nb",
            "\x7f",
            " key ",
            "waiting",
            "active",
            "keep",
            "replace",
            "Replace",
        ]
    ),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
KEYS = [
    "function",
    "args",
    "queue",
    "correlation_id",
    "idempotency_key",
    "defer_until",
    "defer_by_seconds",
    "max_tries",
    "timeout_seconds",
    "require_approval",
    "approval_reason",
    "priority",
    "unique_key",
    "unique_while",
    "on_conflict",
    "concurrency_key",
    "unknown",
]


def drf_verdict(body: object) -> tuple[dict, set[str]]:
    s = JobSubmitIn(data=body)
    if s.is_valid():
        return dict(s.validated_data), set()
    return {}, set(s.errors)


@settings(max_examples=400, deadline=None)
@given(body=st.dictionaries(st.sampled_from(KEYS), values, max_size=6), function=st.booleans())
def test_the_parser_and_the_serializer_agree(body, function):
    if function:
        body = {"function": "hq.echo", **body}
    parsed, errors = submit_parse(body)
    expected, expected_errors = drf_verdict(body)
    # DRF takes True as 1.0 seconds and `1.0` as a valid boolean through float equality; the
    # parser refuses booleans where numbers are due, so only those keys may differ, and only so.
    lenient = {k for k, v in body.items() if isinstance(v, bool) and k in ("defer_by_seconds",)}
    assert set(errors) - lenient == expected_errors - lenient, (body, errors, expected_errors)
    if not errors and not expected_errors:
        assert Submission(**parsed) == Submission(**expected)


@pytest.mark.parametrize("body", [[], "x", 3, None])
def test_a_body_that_is_not_an_object_is_refused_whole(body):
    assert set(submit_parse(body)[1]) == {"non_field_errors"} == set(drf_verdict(body)[1])


@pytest.mark.django_db
def test_job_out_renders_what_the_declared_fields_render():
    caller = factories.caller()
    now = clock.now()
    job = Job.objects.create(
        workspace=caller.workspace,
        owner=caller.user,
        function="hq.echo",
        args={"a": [1, {"b": None}]},
        queue="default",
        state="succeeded",
        correlation_id="c",
        idempotency_key="k",
        attempts=2,
        due_at=now,
        created_at=now - timedelta(seconds=3),
        dispatched_at=now,
        started_at=now + timedelta(milliseconds=5),
        first_started_at=now + timedelta(milliseconds=2),
        finished_at=now + timedelta(seconds=1),
        cancel_requested_at=now,
        result={"ok": True},
        error="",
    )
    fast = JobOut(job).data
    declared = serializers.ModelSerializer.to_representation(JobOut(job), job)
    assert fast == declared
    anonymous = Job.objects.create(workspace=caller.workspace, owner=None, function="hq.echo", args={})
    assert JobOut(anonymous).data == serializers.ModelSerializer.to_representation(JobOut(anonymous), anonymous)
