"""Where a delivery goes: the `deliver_to` tagged object, validated and normalised.

Destinations name people and places by id only. A URL is never taken from a request body: the
Slack and Teams base URLs come from settings, and ids are quoted as single path segments.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from hq.errors import ValidationFailed

KINDS = ("web_inbox", "slack_dm", "slack_channel", "teams_dm", "teams_channel")

SLACK_USER_ID = re.compile(r"[UW][A-Z0-9]{2,20}")
SLACK_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{2,20}")
TEAMS_ID_MAX_CHARS = 512


def _slack_user_id(value: object) -> str | None:
    if isinstance(value, str) and SLACK_USER_ID.fullmatch(value):
        return None
    return "Must be a Slack user id: U or W, then 2 to 20 capital letters or digits."


def _slack_channel_id(value: object) -> str | None:
    if isinstance(value, str) and SLACK_CHANNEL_ID.fullmatch(value):
        return None
    return "Must be a Slack channel id: C, G or D, then 2 to 20 capital letters or digits."


def _teams_id(value: object) -> str | None:
    if not isinstance(value, str):
        return "Must be a string."
    if not 1 <= len(value) <= TEAMS_ID_MAX_CHARS:
        return f"Must be 1 to {TEAMS_ID_MAX_CHARS} characters."
    # Whitespace, and every "other" Unicode category: control, format (zero-width), surrogate,
    # private use and unassigned characters.
    if any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in value):
        return "Must not contain whitespace or control characters."
    if "://" in value:
        return "Must be a Teams id, not a URL."
    return None


#: The fields of each kind, in their normalised order, with the check for each.
FIELDS: dict[str, dict[str, Callable[[object], str | None]]] = {
    "web_inbox": {},
    "slack_dm": {"user_id": _slack_user_id},
    "slack_channel": {"channel_id": _slack_channel_id},
    "teams_dm": {"conversation_id": _teams_id},
    "teams_channel": {"team_id": _teams_id, "channel_id": _teams_id},
}


def validate_destination(data: object) -> dict:
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
        elif problem := check(data[name]):
            errors[f"deliver_to.{name}"] = [problem]
    for name in data:
        if name != "kind" and name not in checks:
            errors[f"deliver_to.{name}"] = [f"Unknown field for kind {kind!r}."]
    if errors:
        raise ValidationFailed(f"deliver_to is not a valid {kind} destination.", fields=errors)
    return {"kind": kind, **{name: data[name] for name in checks}}
