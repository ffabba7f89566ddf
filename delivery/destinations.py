"""Where a delivery goes: the `deliver_to` tagged object, validated and normalised.

Destinations name people and places by id only. A URL is never taken from a request body: the
Slack and Teams base URLs come from settings, and ids are quoted as single path segments.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from hq.errors import ValidationFailed

KINDS = ("web_inbox", "slack_dm", "slack_channel", "teams_dm", "teams_channel")

#: Slack ids: a capital letter naming the kind, then capital letters and digits (`U024BE7LH`).
#: Users are U (W on Enterprise Grid); channels are C (public), G (private) or D (a direct message).
SLACK_USER_ID = re.compile(r"[UW][A-Z0-9]{2,20}")
SLACK_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{2,20}")
TEAMS_ID_MAX_CHARS = 512
#: What follows a Teams id's prefix: the characters Bot Framework ids are made of (base64url
#: `a:1Xyz-_...`, `19:...@thread.tacv2`, `19:..._...@unq.gbl.spaces`, `;messageid=123`, `8:orgid:...`).
#: No `/`, `?`, `#`, `%`, whitespace or control characters: the id becomes one URL path segment.
_TEAMS_ID_BODY = r"[A-Za-z0-9._~@:;=+\-]+"
#: A conversation: a channel or group chat (`19:`), a personal chat (`a:`), or the older `29:` and
#: `8:` forms.
TEAMS_CONVERSATION_ID = re.compile(rf"(?:19|29|a|8):{_TEAMS_ID_BODY}")
#: A team or a channel: the `19:...@thread...` thread ids Teams gives both.
TEAMS_THREAD_ID = re.compile(rf"19:{_TEAMS_ID_BODY}")


def _slack_user_id(value: object) -> str | None:
    if isinstance(value, str) and SLACK_USER_ID.fullmatch(value):
        return None
    return "Must be a Slack user id: U or W, then 2 to 20 capital letters or digits."


def _slack_channel_id(value: object) -> str | None:
    if isinstance(value, str) and SLACK_CHANNEL_ID.fullmatch(value):
        return None
    return "Must be a Slack channel id: C, G or D, then 2 to 20 capital letters or digits."


def _teams(pattern: re.Pattern[str], shape: str) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        if not isinstance(value, str):
            return "Must be a string."
        if not 1 <= len(value) <= TEAMS_ID_MAX_CHARS:
            return f"Must be 1 to {TEAMS_ID_MAX_CHARS} characters."
        if not pattern.fullmatch(value):
            return (
                f"Must be a Teams id: {shape}, then letters, digits and . _ ~ @ : ; = + - "
                "(no spaces, slashes, ? # or %)."
            )
        return None

    return check


_teams_conversation_id = _teams(TEAMS_CONVERSATION_ID, "19:, a:, 29: or 8:")
_teams_thread_id = _teams(TEAMS_THREAD_ID, "19:")


def teams_id_problem(field: str, value: object) -> str | None:
    """Why `value` is not a valid Teams `conversation_id`, `team_id` or `channel_id` (None if it is)."""
    return (_teams_conversation_id if field == "conversation_id" else _teams_thread_id)(value)


#: The fields of each kind, in their normalised order, with the check for each.
FIELDS: dict[str, dict[str, Callable[[object], str | None]]] = {
    "web_inbox": {},
    "slack_dm": {"user_id": _slack_user_id},
    "slack_channel": {"channel_id": _slack_channel_id},
    "teams_dm": {"conversation_id": _teams_conversation_id},
    "teams_channel": {"team_id": _teams_thread_id, "channel_id": _teams_thread_id},
}


def validate_destination(data: object) -> dict[str, Any]:
    """Return `data` as a normalised destination (`kind` first), or raise ValidationFailed.

    Field errors are keyed `deliver_to.<field>`, all reported at once.
    """
    if not isinstance(data, dict):
        raise ValidationFailed(
            "deliver_to must be an object with a kind.",
            fields={"deliver_to": ['Must be an object such as {"kind": "web_inbox"}.']},
        )
    allowed = ", ".join(KINDS)
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in FIELDS:
        problem = "This field is required." if kind is None else f"Unknown kind {kind!r}."
        raise ValidationFailed(
            f"deliver_to.kind must be one of: {allowed}.",
            fields={"deliver_to.kind": [f"{problem} Allowed: {allowed}."]},
        )
    checks = FIELDS[kind]
    errors: dict[str, list[str]] = {}
    for name, check in checks.items():
        if name not in data:
            errors[f"deliver_to.{name}"] = ["This field is required."]
        elif refusal := check(data[name]):
            errors[f"deliver_to.{name}"] = [refusal]
    for name in data:
        if name != "kind" and name not in checks:
            errors[f"deliver_to.{name}"] = [f"Unknown field for kind {kind!r}."]
    if errors:
        raise ValidationFailed(f"deliver_to is not a valid {kind} destination.", fields=errors)
    return {"kind": kind, **{name: data[name] for name in checks}}
