"""Slack: a Block Kit message through `slack_sdk`, sent once (HQ retries, not the client)."""

from __future__ import annotations

import http.client
from typing import Any

from django.conf import settings
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from delivery.models import AttemptOutcome
from delivery.sending import (
    NotConfigured,
    SendResult,
    clip,
    from_http_status,
    header_value,
    parse_retry_after,
    unreachable,
)

#: Slack's limits: header block text, section text, blocks per message.
HEADER_MAX_CHARS = 150
SECTION_MAX_CHARS = 3000
MAX_SECTIONS = 49
TRUNCATED_NOTE = "\n_… (truncated)_"

#: `ok: false` errors Slack documents as temporary; anything else is final.
TRANSIENT_ERRORS = frozenset({"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"})


def escape(text: str) -> str:
    """Escape &, < and > so output cannot mention @channel or forge links (Slack "mrkdwn" rules)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def split_sections(text: str, limit: int = SECTION_MAX_CHARS) -> list[str]:
    """Split escaped `text` into pieces of at most `limit` characters.

    Cuts at the last line break that fits, else mid-line but never inside an entity like "&amp;".
    Blank pieces are dropped: Slack refuses a section without text.
    """
    pieces: list[str] = []
    while len(text) > limit:
        cut = text.rfind("\n", 0, limit + 1)
        if cut > 0:
            piece, text = text[:cut], text[cut + 1 :]
        else:
            cut = limit
            amp = text.rfind("&", max(cut - 4, 0), cut)
            if amp > 0 and ";" not in text[amp:cut]:
                cut = amp
            piece, text = text[:cut], text[cut:]
        pieces.append(piece)
    pieces.append(text)
    return [piece for piece in pieces if piece.strip()]


def message_blocks(header: str, body: str) -> list[dict[str, Any]]:
    """Return a header block and the body as mrkdwn sections, within Slack's size limits."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": clip(header, HEADER_MAX_CHARS), "emoji": True}}
    ]
    sections = split_sections(escape(body))
    if len(sections) > MAX_SECTIONS:
        sections = sections[:MAX_SECTIONS]
        last = sections[-1]
        keep = SECTION_MAX_CHARS - len(TRUNCATED_NOTE)
        if len(last) > keep:
            last = split_sections(last, keep)[0]
        sections[-1] = last + TRUNCATED_NOTE
    blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": piece}} for piece in sections]
    return blocks


def _from_api_error(exc: SlackApiError) -> SendResult:
    response = exc.response
    data = response.data if isinstance(response.data, dict) else {}
    method = str(response.api_url).rstrip("/").rsplit("/", 1)[-1]
    reason = str(data.get("error") or f"HTTP {response.status_code}")
    if data.get("needed"):
        reason += f" (needed: {data['needed']})"
    error = f"{method}: {reason}"
    if response.status_code == 200 and data.get("error") in TRANSIENT_ERRORS:
        retry_after_s = parse_retry_after(header_value(response.headers, "Retry-After"))
        return SendResult(AttemptOutcome.RETRY, status_code=200, error=clip(error), retry_after_s=retry_after_s)
    if response.status_code == 200:
        return SendResult(AttemptOutcome.FAILED, status_code=200, error=clip(error))
    return from_http_status(response.status_code, headers=response.headers, error=error)


class SlackSender:
    """Posts to a Slack user (through the DM `conversations.open` returns) or a channel."""

    def __init__(self, *, token: str, base_url: str, timeout_s: float) -> None:
        # retry_handlers=[]: slack_sdk would otherwise retry connection errors itself. It annotates
        # `timeout` as int but hands it to urllib's urlopen, which takes seconds as a float.
        self.client = WebClient(
            token=token,
            base_url=base_url,
            timeout=timeout_s,  # type: ignore[arg-type]
            retry_handlers=[],
        )

    @classmethod
    def from_settings(cls) -> SlackSender:
        if not settings.SLACK_BOT_TOKEN:
            raise NotConfigured("SLACK_BOT_TOKEN is not set, so Slack deliveries cannot be sent.")
        return cls(
            token=settings.SLACK_BOT_TOKEN, base_url=settings.SLACK_API_URL, timeout_s=settings.HQ_DELIVERY_TIMEOUT_S
        )

    def send(self, *, destination: dict[str, Any], header: str, body: str) -> SendResult:
        """Send once; external_id is the message's `ts`."""
        try:
            if destination["kind"] == "slack_dm":
                opened = self.client.conversations_open(users=destination["user_id"])
                channel = (opened.get("channel") or {}).get("id")
                if not channel:
                    return SendResult(AttemptOutcome.RETRY, status_code=200, error="conversations.open: no channel id")
            else:
                channel = destination["channel_id"]
            posted = self.client.chat_postMessage(
                channel=channel, text=escape(header), blocks=message_blocks(header, body)
            )
        except SlackApiError as exc:
            return _from_api_error(exc)
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out
            return unreachable(exc, service="Slack")
        except SlackClientError as exc:  # a bad SLACK_API_URL, for one
            return SendResult(AttemptOutcome.FAILED, error=clip(f"Slack client error: {exc}"))
        ts = str(posted.get("ts") or "")
        return SendResult(AttemptOutcome.DELIVERED, external_id=ts, status_code=posted.status_code)
