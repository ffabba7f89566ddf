"""Cancel and retry check who asks in the service itself, whichever door the call comes through.

The API finds a member only their own jobs and the admin lists only workspaces a staff user
administers, but a caller that reaches `job_cancel`/`job_retry` directly is held to the same rule.
"""

from __future__ import annotations

import pytest

from hq import services as hq_services
from hq.errors import Forbidden
from hq.models import User
from queueapp import services
from queueapp.models import Job, JobState
from tests import factories

pytestmark = pytest.mark.django_db


def job_of(caller: factories.Caller) -> Job:
    job, _ = services.job_submit(
        workspace=caller.workspace, owner=caller.user, submission=services.Submission(function="hq.echo", args={})
    )
    return job


def test_job_cancel__another_members_job_is_refused_and_left_alone(member):
    other = factories.caller(ws=member.workspace)
    job = job_of(other)
    with pytest.raises(Forbidden) as refused:
        services.job_cancel(job=job, actor=member.user)
    assert refused.value.code == "not_owner"
    job.refresh_from_db()
    assert job.state == JobState.QUEUED and list(job.events.values_list("kind", flat=True)) == ["submitted"]


def test_job_retry__another_members_job_is_refused_and_left_alone(member):
    other = factories.caller(ws=member.workspace)
    job = services.job_cancel(job=job_of(other), actor=other.user)
    with pytest.raises(Forbidden) as refused:
        services.job_retry(job=job, actor=member.user)
    assert refused.value.code == "not_owner"
    job.refresh_from_db()
    assert job.state == JobState.CANCELLED


def test_job_cancel_and_retry__the_owner_and_a_workspace_admin_may(member, admin):
    job = job_of(member)
    assert services.job_cancel(job=job, actor=member.user).state == JobState.CANCELLED
    assert services.job_retry(job=job, actor=admin.user).state == JobState.QUEUED
    assert services.job_cancel(job=job, actor=admin.user).state == JobState.CANCELLED


def test_job_cancel_and_retry__another_workspaces_admin_is_refused(member):
    outsider = factories.caller(admin=True)
    job = job_of(member)
    with pytest.raises(Forbidden):
        services.job_cancel(job=job, actor=outsider.user)
    services.job_cancel(job=job, actor=member.user)
    with pytest.raises(Forbidden):
        services.job_retry(job=job, actor=outsider.user)


def test_job_cancel_and_retry__in_the_admin_staff_must_cover_the_workspace(member):
    job = job_of(member)
    staff = User.objects.create_user("ops@example.com", "pw-long-enough", is_staff=True)
    hq_services.membership_set(user=staff, workspace=member.workspace, role="member")  # a member is not enough
    with pytest.raises(Forbidden) as refused:
        services.job_cancel(job=job, actor=staff, via="admin")
    assert refused.value.code == "admin_required"
    hq_services.membership_set(user=staff, workspace=member.workspace, role="admin")
    assert services.job_cancel(job=job, actor=staff, via="admin").state == JobState.CANCELLED
    assert services.job_retry(job=job, actor=staff, via="admin").state == JobState.QUEUED


def test_job_cancel__the_system_needs_no_role(member):
    assert services.job_cancel(job=job_of(member), actor=None).state == JobState.CANCELLED
