"""The delivery pages of the ops console: read-only, scoped to the staff user's workspaces."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client

from hq import services as hq_services
from hq.models import User
from tests import factories

pytestmark = pytest.mark.django_db


def staff_client(*, superuser: bool = False, workspace=None) -> Client:
    user = User.objects.create_user(f"staff{uuid.uuid4().hex[:8]}@example.com", is_staff=True, is_superuser=superuser)
    if workspace is not None:
        hq_services.membership_set(user=user, workspace=workspace, role="admin")
    client = Client()
    client.force_login(user)
    return client


def test_admin__lists_and_shows_a_delivery_with_its_attempts(make_delivery):
    delivery = make_delivery({"kind": "web_inbox"}, conversation_id=uuid.uuid4())
    client = staff_client(superuser=True)

    listing = client.get("/admin/delivery/delivery/", {"status": "delivered", "q": str(delivery.source_id)})
    page = client.get(f"/admin/delivery/delivery/{delivery.pk}/change/")

    assert listing.status_code == 200 and str(delivery.source_id) in listing.content.decode()
    assert page.status_code == 200
    html = page.content.decode()
    assert "Daily digest" in html and "web_inbox" in html
    assert 'name="_save"' not in html, "read-only"
    assert client.post(f"/admin/delivery/delivery/{delivery.pk}/delete/").status_code == 403


def test_admin__staff_see_only_their_workspaces(make_delivery, workspace):
    mine = make_delivery({"kind": "slack_channel", "channel_id": "C0123"})
    client = staff_client(workspace=factories.workspace())

    assert str(mine.source_id) not in client.get("/admin/delivery/delivery/").content.decode()
    assert client.get(f"/admin/delivery/delivery/{mine.pk}/change/").status_code == 302

    member = staff_client(workspace=workspace)
    assert str(mine.source_id) in member.get("/admin/delivery/delivery/").content.decode()
    assert member.get(f"/admin/delivery/delivery/{mine.pk}/change/").status_code == 200
