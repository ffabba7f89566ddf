"""Microsoft Teams through the Bot Framework REST API, with httpx and without client retries."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from django.conf import settings

from delivery.destinations import teams_id_problem
from delivery.models import AttemptOutcome
from delivery.sending import NotConfigured, SendResult, clip, from_http_status, unreachable

#: A token is used until this long before it expires.
TOKEN_REFRESH_MARGIN_S = 300.0
#: Teams refuses messages over about 28 KB; the text is cut to stay below it.
TEXT_MAX_BYTES = 24_000
TRUNCATED_NOTE = "\n\n*… (truncated)*"


class _Refused(Exception):
    """The token request ended the send; `result` says how."""

    def __init__(self, result: SendResult) -> None:
        super().__init__(result.error)
        self.result = result


@dataclass(frozen=True)
class _Token:
    value: str
    refresh_at: float  # time.monotonic()


# Process-wide: one token per (token URL, app id, scope), shared by all threads.
_tokens: dict[tuple[str, str, str], _Token] = {}
_tokens_lock = threading.Lock()


def token_cache_clear() -> None:
    """Forget every cached token (tests; a changed app password)."""
    with _tokens_lock:
        _tokens.clear()


def _error_text(response: httpx.Response) -> str:
    """Return the reason in a Bot Framework or Entra ID error body, else the body itself."""
    try:
        data = response.json()
    except ValueError:
        return response.text.strip() or f"HTTP {response.status_code}"
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):  # Bot Framework: {"error": {"code", "message"}}
            return ": ".join(str(error[k]) for k in ("code", "message") if error.get(k))
        if isinstance(error, str):  # Entra ID: {"error", "error_description"}
            return ": ".join(str(v) for v in (error, data.get("error_description")) if v)
    return response.text.strip()


def message_text(header: str, body: str) -> str:
    """Return "**header**" and the body as Markdown, cut to TEXT_MAX_BYTES of UTF-8."""
    text = f"**{header}**\n\n{body}"
    if len(text.encode()) <= TEXT_MAX_BYTES:
        return text
    keep = TEXT_MAX_BYTES - len(TRUNCATED_NOTE.encode())
    return text.encode()[:keep].decode(errors="ignore") + TRUNCATED_NOTE


def activities_url(service_url: str, conversation_id: str) -> str:
    """Return the activities URL of a conversation; the id is one percent-encoded path segment.

    A segment that is empty, `.` or `..` would be resolved into another path: refused (ValueError)
    even though validated ids never are one.
    """
    segment = quote(conversation_id, safe="")
    if segment in ("", ".", ".."):
        raise ValueError(f"{conversation_id!r} cannot be a conversation id in a URL path")
    return f"{service_url.rstrip('/')}/v3/conversations/{segment}/activities"


class TeamsSender:
    """Posts a message activity to a Teams chat or channel conversation."""

    def __init__(
        self, *, app_id: str, app_password: str, token_url: str, scope: str, service_url: str, timeout_s: float
    ) -> None:
        self.app_id = app_id
        self.app_password = app_password
        self.token_url = token_url
        self.scope = scope
        self.service_url = service_url
        self.timeout_s = timeout_s

    @classmethod
    def from_settings(cls) -> TeamsSender:
        missing = [name for name in ("TEAMS_APP_ID", "TEAMS_APP_PASSWORD") if not getattr(settings, name)]
        if missing:
            raise NotConfigured(f"{' and '.join(missing)} not set, so Teams deliveries cannot be sent.")
        return cls(
            app_id=settings.TEAMS_APP_ID,
            app_password=settings.TEAMS_APP_PASSWORD,
            token_url=settings.TEAMS_TOKEN_URL,
            scope=settings.TEAMS_TOKEN_SCOPE,
            service_url=settings.TEAMS_SERVICE_URL,
            timeout_s=settings.HQ_DELIVERY_TIMEOUT_S,
        )

    @property
    def _token_key(self) -> tuple[str, str, str]:
        return (self.token_url, self.app_id, self.scope)

    def _token(self, client: httpx.Client) -> str:
        """Return a cached bot token, fetching one (client credentials) when none is fresh.

        The lock is held while fetching, so concurrent sends wait for one request.
        """
        with _tokens_lock:
            cached = _tokens.get(self._token_key)
            if cached and time.monotonic() < cached.refresh_at:
                return cached.value
            form = {
                "grant_type": "client_credentials",
                "client_id": self.app_id,
                "client_secret": self.app_password,
                "scope": self.scope,
            }
            try:
                response = client.post(self.token_url, data=form)
            except httpx.HTTPError as exc:
                raise _Refused(unreachable(exc, service="The Teams token endpoint")) from exc
            if response.status_code != 200:
                error = f"Teams token request refused: {_error_text(response)}"
                raise _Refused(from_http_status(response.status_code, headers=response.headers, error=error))
            try:
                data = response.json()
                value, expires_in_s = str(data["access_token"]), float(data.get("expires_in", 0))
            except (ValueError, KeyError, TypeError) as exc:
                error = "The Teams token endpoint answered without an access_token."
                raise _Refused(SendResult(AttemptOutcome.RETRY, status_code=200, error=error)) from exc
            _tokens[self._token_key] = _Token(value, time.monotonic() + expires_in_s - TOKEN_REFRESH_MARGIN_S)
            return value

    def _drop_token(self) -> None:
        with _tokens_lock:
            _tokens.pop(self._token_key, None)

    def send(self, *, destination: dict[str, Any], header: str, body: str) -> SendResult:
        """Send once; external_id is the activity id. A 401 drops the token and asks for a retry."""
        activity: dict[str, Any] = {"type": "message", "textFormat": "markdown", "text": message_text(header, body)}
        # Checked again here: a delivery recorded before the ids' formats were enforced may hold
        # anything (`..` once passed), and the id goes into the URL path.
        fields = ("team_id", "channel_id") if destination["kind"] == "teams_channel" else ("conversation_id",)
        for name in fields:
            if problem := teams_id_problem(name, destination.get(name)):
                return SendResult(AttemptOutcome.FAILED, error=clip(f"Not sent: {name} {problem}"))
        if destination["kind"] == "teams_channel":
            conversation_id = destination["channel_id"]
            activity["channelData"] = {
                "team": {"id": destination["team_id"]},
                "channel": {"id": destination["channel_id"]},
            }
        else:
            conversation_id = destination["conversation_id"]
        # retries=0: the transport would otherwise retry failed connections itself.
        transport = httpx.HTTPTransport(retries=0)
        with httpx.Client(timeout=self.timeout_s, transport=transport, follow_redirects=False) as client:
            try:
                token = self._token(client)
                response = client.post(
                    activities_url(self.service_url, conversation_id),
                    json=activity,
                    headers={"Authorization": f"Bearer {token}"},
                )
            except _Refused as exc:
                return exc.result
            except httpx.HTTPError as exc:
                return unreachable(exc, service="Teams")
        if response.status_code == 401:
            self._drop_token()
            error = f"Teams refused the bot token: {_error_text(response)}"
            return SendResult(AttemptOutcome.RETRY, status_code=401, error=clip(error))
        if response.is_success:
            try:
                external_id = str(response.json().get("id") or "")
            except (ValueError, AttributeError):
                external_id = ""
            return SendResult(AttemptOutcome.DELIVERED, external_id=external_id, status_code=response.status_code)
        return from_http_status(response.status_code, headers=response.headers, error=_error_text(response))
