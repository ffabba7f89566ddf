"""The OpenAI-compatible agent backend (the official `openai` package pointed at the agent's base URL).

Its own retries are off: HQ retries 429 and 5xx a bounded number of times, honouring Retry-After
when it is short, and records the error on the fire otherwise.
"""

from __future__ import annotations

import math
import os
import random
import time

import openai
from django.conf import settings
from openai.types.chat import ChatCompletionMessageParam

from hq import agents
from hq.errors import ValidationFailed
from hq.models import Agent

#: Waits longer than this are not slept in a worker slot: the run fails and the error is recorded.
MAX_WAIT_S = 10.0


class AgentRunError(RuntimeError):
    """The model API refused or failed."""


def _retry_after(exc: openai.APIStatusError) -> float | None:
    raw = exc.response.headers.get("retry-after") if exc.response is not None else None
    try:
        wait = float(raw) if raw is not None else None
    except ValueError:
        return None
    # "-1", "nan" and "inf" parse as floats but are no wait: time.sleep would raise on them.
    return wait if wait is not None and math.isfinite(wait) and wait >= 0 else None


def _message_param(message: agents.ChatMessage) -> ChatCompletionMessageParam:
    """One message as the API takes it; HQ writes only system, user and assistant messages."""
    if message.role == "system":
        return {"role": "system", "content": message.content}
    if message.role == "assistant":
        return {"role": "assistant", "content": message.content}
    if message.role == "user":
        return {"role": "user", "content": message.content}
    raise ValueError(f"no chat role {message.role!r}")


class OpenAICompatibleBackend:
    def reply(self, agent: Agent, messages: list[agents.ChatMessage]) -> str:
        if not agent.base_url or not agent.model:
            raise ValidationFailed("The agent needs a base URL and a model.", code="agent_misconfigured")
        key = os.environ.get(agent.api_key_env, "") if agent.api_key_env else ""
        client = openai.OpenAI(
            base_url=agent.base_url, api_key=key or "unset", max_retries=0, timeout=settings.HQ_AGENT_TIMEOUT_S
        )
        payload = [_message_param(m) for m in messages]
        attempts = max(settings.HQ_AGENT_MAX_ATTEMPTS, 1)
        for attempt in range(1, attempts + 1):
            try:
                response = client.chat.completions.create(model=agent.model, messages=payload)
                return (response.choices[0].message.content or "").strip()
            except openai.APIStatusError as exc:
                retryable = exc.status_code == 429 or exc.status_code >= 500
                wait = _retry_after(exc)
                if wait is None:
                    wait = min(2 ** (attempt - 1), MAX_WAIT_S) * random.uniform(0.5, 1.0)
                if not retryable or attempt == attempts or wait > MAX_WAIT_S:
                    raise AgentRunError(f"Model API answered {exc.status_code}: {exc.message}") from exc
                time.sleep(wait)
            except (openai.APIConnectionError, openai.APITimeoutError) as exc:
                if attempt == attempts:
                    raise AgentRunError(f"Model API unreachable: {exc}") from exc
                time.sleep(min(2 ** (attempt - 1), MAX_WAIT_S) * random.uniform(0.5, 1.0))
        raise AgentRunError("Model API gave no answer.")


agents.register_backend(Agent.Backend.OPENAI_COMPATIBLE, OpenAICompatibleBackend())
