"""The admin as ops console: HITL changelist, confirmation flow, decisions, job timeline and actions."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.test import Client

from hq import clock
from hq import services as hq_services
from hq.models import Membership, User
from queueapp import services
from queueapp.models import HITLRequest, Job, JobEvent
from tests import factories

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/queueapp/hitlrequest/"


def staff(ws=None, *, role: str | None = "admin", superuser: bool = False) -> User:
    """A staff user (admin of `ws` when given)."""
    user = User.objects.create_user(email=f"staff{User.objects.count()}@example.com", password="pw", is_staff=True)
    if superuser:
        User.objects.filter(pk=user.pk).update(is_superuser=True)
        user.refresh_from_db()
    if ws is not None and role:
        hq_services.membership_set(user=user, workspace=ws, role=role)
    return user


def client_for(user: User) -> Client:
    c = Client()
    c.force_login(user)
    return c


def request_for(caller, function="tests.gated", args=None, reason="") -> HITLRequest:
    job, _ = services.job_submit(
        workspace=caller.workspace,
        owner=caller.user,
        submission=services.Submission(
            function=function, args=args or {"to": "ops"}, requires_approval=True, approval_reason=reason
        ),
    )
    return HITLRequest.objects.get(job=job)


def texts(resp) -> list[str]:
    """The messages a response queued; they are consumed, so the next response starts empty."""
    out = [m.message for m in get_messages(resp.wsgi_request)]
    resp.client.cookies.pop("messages", None)
    return out


def test_changelist__pending_first_with_age_filters_and_search(member):
    ops = client_for(staff(member.workspace))
    old_decided = request_for(member, args={"i": 0})
    services.hitl_decide(request=old_decided, actor=staff(member.workspace), decision="reject", via="admin")
    HITLRequest.objects.filter(pk=old_decided.pk).update(created_at=clock.now() - timedelta(hours=2))
    pending = request_for(member, function="hq.echo", args={"i": 1})
    Job.objects.filter(pk=pending.job_id).update(correlation_id="order-77")
    resp = ops.get(CHANGELIST)
    assert resp.status_code == 200
    assert [r.pk for r in resp.context["cl"].result_list] == [pending.pk, old_decided.pk]
    html = resp.content.decode()
    assert re.search(r'<time class="hq-when" datetime="[^"]+" title="[^"]+ UTC">2 h ago</time>', html), "requested"
    decided_row = next(r for r in html.split("<tr") if str(old_decided.job_id)[:8] in r)
    assert "reject-" not in decided_row and "approve-" not in decided_row, "buttons on pending rows only"
    pending_row = next(r for r in html.split("<tr") if str(pending.job_id)[:8] in r)
    assert f'href="/admin/queueapp/hitlrequest/{pending.pk}/approve/?from=list"' in pending_row
    assert "{&quot;i&quot;: 1}" in pending_row, "the argument preview"
    assert [r.pk for r in ops.get(CHANGELIST + "?state__exact=rejected").context["cl"].result_list] == [old_decided.pk]
    assert [r.pk for r in ops.get(CHANGELIST + "?function=hq.echo").context["cl"].result_list] == [pending.pk]
    by_user = ops.get(CHANGELIST + f"?requested_by__id__exact={member.user.pk}").context["cl"].result_list
    assert len(by_user) == 2
    assert [r.pk for r in ops.get(CHANGELIST + f"?q={pending.job_id}").context["cl"].result_list] == [pending.pk]
    assert [r.pk for r in ops.get(CHANGELIST + "?q=order-77").context["cl"].result_list] == [pending.pk]


def test_scoping__staff_see_the_workspaces_they_administer_superusers_all(member):
    mine = request_for(member)
    other = request_for(factories.caller())
    viewer = client_for(staff(member.workspace))
    assert [r.pk for r in viewer.get(CHANGELIST).context["cl"].result_list] == [mine.pk]
    assert viewer.get(f"{CHANGELIST}{other.pk}/change/").status_code == 302, "not found: back to the index"
    boss = client_for(staff(superuser=True))
    assert {r.pk for r in boss.get(CHANGELIST).context["cl"].result_list} == {mine.pk, other.pk}
    assert client_for(staff()).get(CHANGELIST).status_code == 403, "staff in no workspace"
    plain = client_for(staff(member.workspace, role="member"))
    assert plain.get(CHANGELIST).status_code == 403, "a plain member administers no workspace"
    nobody = User.objects.create_user(email="plain@example.com", password="pw")
    assert client_for(nobody).get(CHANGELIST).status_code == 302, "non-staff go to the login page"


def test_action__confirmation_page_then_decision(member):
    hitl = request_for(member, args={"to": "ops", "n": [1, 2]}, reason="weekly report")
    ops = client_for(staff(member.workspace))
    confirm = ops.post(CHANGELIST, {"action": "approve_selected", "_selected_action": [hitl.pk]})
    assert confirm.status_code == 200
    assert confirm.templates[0].name == "admin/queueapp/hitlrequest/decide_confirmation.html"
    page = confirm.content.decode()
    assert "tests.gated" in page and "weekly report" in page and 'name="comment"' in page
    assert "&quot;n&quot;: [\n    1,\n    2\n  ]" in page, "pretty-printed arguments"
    hitl.refresh_from_db()
    assert hitl.state == "pending", "nothing happens before the confirmation"
    done = ops.post(
        CHANGELIST,
        {"action": "approve_selected", "_selected_action": [hitl.pk], "post": "yes", "comment": "fine"},
    )
    assert done.status_code == 302
    assert texts(done) == ["Approved 1 request(s)."]
    hitl.refresh_from_db()
    assert (hitl.state, hitl.decided_via, hitl.comment, hitl.job.state) == ("approved", "admin", "fine", "queued")
    event = JobEvent.objects.get(job_id=hitl.job_id, kind="approved")
    assert event.detail["via"] == "admin" and event.detail["comment"] == "fine"


def test_action__refusals_are_messages_not_errors(member):
    rejected, own, fine = request_for(member), None, request_for(member)
    user = staff(member.workspace)
    services.hitl_decide(request=rejected, actor=user, decision="reject", via="admin")
    own_job, _ = services.job_submit(
        workspace=member.workspace,
        owner=member.user,
        submission=services.Submission(function="tests.gated", args={}, requested_by=user),
    )
    own = HITLRequest.objects.get(job=own_job)
    resp = client_for(user).post(
        CHANGELIST,
        {"action": "approve_selected", "_selected_action": [rejected.pk, own.pk, fine.pk], "post": "yes"},
    )
    assert resp.status_code == 302
    msgs = texts(resp)
    assert any("is rejected" in m for m in msgs) and any("someone else must decide" in m for m in msgs)
    assert msgs[-1] == "Approved 1 request(s)."
    states = dict(HITLRequest.objects.values_list("pk", "state"))
    assert (states[rejected.pk], states[own.pk], states[fine.pk]) == ("rejected", "pending", "approved")


def test_buttons__reject_through_the_request_page(member):
    hitl = request_for(member)
    ops = client_for(staff(member.workspace))
    page = ops.get(f"{CHANGELIST}{hitl.pk}/change/")
    assert page.status_code == 200 and b'id="hitl-approve"' in page.content and b'id="hitl-reject"' in page.content
    confirm = ops.get(f"{CHANGELIST}{hitl.pk}/reject/")
    assert confirm.status_code == 200 and b"Yes, reject" in confirm.content
    done = ops.post(f"{CHANGELIST}{hitl.pk}/reject/", {"comment": "too risky"})
    assert done.status_code == 302 and done["Location"] == f"{CHANGELIST}{hitl.pk}/change/"
    assert texts(done) == ["Rejected: the job will not run."]
    hitl.refresh_from_db()
    assert (hitl.state, hitl.comment, hitl.job.state) == ("rejected", "too risky", "rejected")
    again = ops.get(f"{CHANGELIST}{hitl.pk}/approve/")
    assert again.status_code == 302 and texts(again) == ["This request is already rejected."]
    assert b'id="hitl-approve"' not in ops.get(f"{CHANGELIST}{hitl.pk}/change/").content


def test_buttons__only_workspace_admins_and_never_the_requester(member):
    hitl = request_for(member)
    viewer = client_for(staff(member.workspace, role="member"))
    assert viewer.get(f"{CHANGELIST}{hitl.pk}/change/").status_code == 403, "a plain member administers nothing"
    assert viewer.post(f"{CHANGELIST}{hitl.pk}/approve/", {"comment": "let me"}).status_code == 404
    User.objects.filter(pk=member.user.pk).update(is_staff=True, is_superuser=True)
    requester = client_for(User.objects.get(pk=member.user.pk))
    selfish = requester.post(f"{CHANGELIST}{hitl.pk}/approve/", {"comment": "mine"})
    assert "someone else must decide" in texts(selfish)[0]
    hitl.refresh_from_db()
    assert hitl.state == "pending"
    stranger = client_for(staff(factories.workspace()))
    assert stranger.get(f"{CHANGELIST}{hitl.pk}/approve/").status_code == 404


def test_job_page__timeline_inline_and_pretty_args(member):
    hitl = request_for(member, args={"to": "ops"})
    user = staff(member.workspace)
    services.hitl_decide(request=hitl, actor=user, decision="reject", via="admin", comment="no")
    page = client_for(user).get(f"/admin/queueapp/job/{hitl.job_id}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert (
        "Timeline" in html
        and "submitted" in html
        and "rejected" in html
        and '<b>comment</b>: <span class="hq-detail">no</span>' in html  # event details read as key: value
    )
    assert "{\n  &quot;to&quot;: &quot;ops&quot;\n}" in html


def test_job_actions__cancel_and_retry_through_the_services(member):
    hitl = request_for(member)
    finished, _ = services.job_submit(
        workspace=member.workspace, owner=member.user, submission=services.Submission(function="hq.echo", args={})
    )
    services.job_cancel(job=finished, actor=member.user)
    ops = client_for(staff(member.workspace))
    resp = ops.post(
        "/admin/queueapp/job/",
        {"action": "cancel_selected", "_selected_action": [hitl.job_id, finished.pk], "post": "yes"},
    )
    assert resp.status_code == 302
    msgs = texts(resp)
    assert f"Job {finished.pk}: Cannot cancel a job that is cancelled." in msgs
    assert msgs[-1] == "Cancelled (or asked to abort) 1 job(s)."
    hitl.refresh_from_db()
    assert (hitl.state, hitl.decided_via, hitl.job.state) == ("cancelled", "admin", "cancelled")
    retry = ops.post(
        "/admin/queueapp/job/", {"action": "retry_selected", "_selected_action": [hitl.job_id], "post": "yes"}
    )
    assert texts(retry) == ["Retried 1 job(s)."]
    assert Job.objects.get(pk=hitl.job_id).state == "awaiting_approval", "a retry never bypasses a decision"
    viewer = client_for(staff(member.workspace, role="member"))
    assert viewer.get("/admin/queueapp/job/").status_code == 403, "a plain member administers nothing"


def test_workers_and_pauses__read_only(member):
    services.queue_pause(queue="mail", workspace=member.workspace, actor=member.user)
    services.queue_pause(queue="mail", workspace=factories.workspace(), actor=None)
    ops = client_for(staff(member.workspace))
    pauses = ops.get("/admin/queueapp/queuepause/")
    assert pauses.status_code == 200 and len(pauses.context["cl"].result_list) == 1
    # One Workers page, the console's (/admin/ops/workers/): no model page for the worker table.
    assert client_for(staff(superuser=True)).get("/admin/queueapp/worker/").status_code == 404
    assert ops.get("/admin/queueapp/job/add/").status_code == 403
    assert Membership.objects.filter(workspace=member.workspace).count() == 2
