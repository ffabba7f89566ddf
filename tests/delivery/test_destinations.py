"""deliver_to: every kind accepted, every refusal with its field."""

from __future__ import annotations

import pytest

from delivery.destinations import KINDS, validate_destination
from delivery.models import DeliveryKind
from hq.errors import ValidationFailed


def refusal(data: object) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as exc:
        validate_destination(data)
    return exc.value


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"kind": "web_inbox"}, {"kind": "web_inbox"}),
        ({"user_id": "U0123ABCD", "kind": "slack_dm"}, {"kind": "slack_dm", "user_id": "U0123ABCD"}),
        ({"kind": "slack_dm", "user_id": "W0123"}, {"kind": "slack_dm", "user_id": "W0123"}),
        ({"kind": "slack_channel", "channel_id": "C0123ABCD"}, {"kind": "slack_channel", "channel_id": "C0123ABCD"}),
        ({"kind": "slack_channel", "channel_id": "G01"}, {"kind": "slack_channel", "channel_id": "G01"}),
        ({"kind": "slack_channel", "channel_id": "D0123"}, {"kind": "slack_channel", "channel_id": "D0123"}),
        (
            {"kind": "teams_dm", "conversation_id": "a:1Xyz_-=+;messageid=17"},
            {"kind": "teams_dm", "conversation_id": "a:1Xyz_-=+;messageid=17"},
        ),
        (
            {"channel_id": "19:abc@thread.tacv2", "team_id": "19:team@thread.tacv2", "kind": "teams_channel"},
            {"kind": "teams_channel", "team_id": "19:team@thread.tacv2", "channel_id": "19:abc@thread.tacv2"},
        ),
        (
            {"kind": "teams_dm", "conversation_id": "a:" + "x" * 510},
            {"kind": "teams_dm", "conversation_id": "a:" + "x" * 510},
        ),
    ],
)
def test_validate_destination__accepts_and_normalises(data, expected):
    result = validate_destination(data)
    assert result == expected
    assert next(iter(result)) == "kind"


def test_kinds__match_the_model_choices():
    assert KINDS == tuple(DeliveryKind.values)


@pytest.mark.parametrize("data", [None, "web_inbox", ["web_inbox"], 3])
def test_validate_destination__not_an_object(data):
    assert list(refusal(data).fields) == ["deliver_to"]


@pytest.mark.parametrize("data", [{}, {"kind": "email"}, {"kind": 3}, {"kind": "Slack_DM"}, {"kind": None}])
def test_validate_destination__unknown_kind_names_the_allowed_ones(data):
    exc = refusal(data)
    assert list(exc.fields) == ["deliver_to.kind"]
    for kind in KINDS:
        assert kind in exc.message
        assert kind in exc.fields["deliver_to.kind"][0]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"kind": "slack_dm"}, "user_id"),
        ({"kind": "slack_dm", "user_id": "C0123"}, "user_id"),
        ({"kind": "slack_dm", "user_id": "u0123"}, "user_id"),
        ({"kind": "slack_dm", "user_id": "U0"}, "user_id"),
        ({"kind": "slack_dm", "user_id": "U" + "1" * 21}, "user_id"),
        ({"kind": "slack_dm", "user_id": "U0123\n"}, "user_id"),
        ({"kind": "slack_dm", "user_id": 123}, "user_id"),
        ({"kind": "slack_channel"}, "channel_id"),
        ({"kind": "slack_channel", "channel_id": "U0123"}, "channel_id"),
        ({"kind": "slack_channel", "channel_id": "#general"}, "channel_id"),
        ({"kind": "teams_dm"}, "conversation_id"),
        ({"kind": "teams_dm", "conversation_id": ""}, "conversation_id"),
        ({"kind": "teams_dm", "conversation_id": "a:" + "x" * 511}, "conversation_id"),
        ({"kind": "teams_dm", "conversation_id": "a b"}, "conversation_id"),
        ({"kind": "teams_dm", "conversation_id": "ab\x00"}, "conversation_id"),
        ({"kind": "teams_dm", "conversation_id": "ab\u200b"}, "conversation_id"),
        ({"kind": "teams_dm", "conversation_id": "https://evil.example/x"}, "conversation_id"),
        ({"kind": "teams_dm", "conversation_id": ["a"]}, "conversation_id"),
        ({"kind": "teams_channel", "channel_id": "19:c@thread.tacv2"}, "team_id"),
        ({"kind": "teams_channel", "team_id": "19:t@thread.tacv2"}, "channel_id"),
        ({"kind": "teams_channel", "team_id": "t\t", "channel_id": "19:c@thread.tacv2"}, "team_id"),
        ({"kind": "web_inbox", "url": "https://hooks.example/x"}, "url"),
        ({"kind": "slack_channel", "channel_id": "C0123", "webhook_url": "https://hooks.slack.com/x"}, "webhook_url"),
        ({"kind": "teams_dm", "conversation_id": "a:1", "service_url": "https://evil.example/"}, "service_url"),
    ],
)
def test_validate_destination__field_refusals(data, field):
    exc = refusal(data)
    assert list(exc.fields) == [f"deliver_to.{field}"]
    assert exc.fields[f"deliver_to.{field}"][0]


TEAMS_CONVERSATIONS = [
    "19:a1b2c3d4e5f6@thread.tacv2",
    "19:meeting_MjA5ZTk2NmEtY2Y0@thread.v2",
    "19:0a1b2c3d-1111-2222-3333-444455556666_9f8e7d6c-aaaa-bbbb-cccc-ddddeeeeffff@unq.gbl.spaces",
    "19:abc@thread.skype;messageid=1616161616161",
    "a:1iuf9pNr-XOa5Q5y_Tbj6Z5NIUcrcGFEf7DkksNPQ8Q6KI",
    "29:1AbCdEf-GhIjKlMnOpQrStUvWxYz0123456789",
    "8:orgid:2f1e3d4c-5b6a-4789-8a9b-0c1d2e3f4a5b",
]
TEAMS_NOT_IDS = [
    ".",
    "..",
    "a:1/..",
    "19:abc/../x@thread.tacv2",
    "19:a?b@thread.tacv2",
    "19:a#b@thread.tacv2",
    "19:a%2Fb@thread.tacv2",
    "19:a\\b",
    "19:abc@thread.tacv2\n",
    "19:abc def",
    "19:",
    "a:",
    "team",
    "28:bot-id",
    "x:abc",
    "19:ab\u00e9",
]


@pytest.mark.parametrize("conversation_id", TEAMS_CONVERSATIONS)
def test_validate_destination__real_teams_conversation_ids(conversation_id):
    data = {"kind": "teams_dm", "conversation_id": conversation_id}
    assert validate_destination(data) == data


@pytest.mark.parametrize("value", TEAMS_NOT_IDS)
def test_validate_destination__teams_ids_are_not_paths_or_urls(value):
    for data, field in [
        ({"kind": "teams_dm", "conversation_id": value}, "conversation_id"),
        ({"kind": "teams_channel", "team_id": value, "channel_id": "19:c@thread.tacv2"}, "team_id"),
        ({"kind": "teams_channel", "team_id": "19:t@thread.tacv2", "channel_id": value}, "channel_id"),
    ]:
        exc = refusal(data)
        assert list(exc.fields) == [f"deliver_to.{field}"], (value, exc.fields)
        assert "Teams id" in exc.fields[f"deliver_to.{field}"][0]


@pytest.mark.parametrize("value", ["a:1xyz", "29:1xyz", "8:orgid:x"])
def test_validate_destination__a_team_or_channel_is_a_19_thread_id(value):
    exc = refusal({"kind": "teams_channel", "team_id": value, "channel_id": value})
    assert set(exc.fields) == {"deliver_to.team_id", "deliver_to.channel_id"}


def test_validate_destination__reports_every_bad_field_at_once():
    exc = refusal({"kind": "teams_channel", "team_id": "", "extra": 1})
    assert set(exc.fields) == {"deliver_to.team_id", "deliver_to.channel_id", "deliver_to.extra"}
