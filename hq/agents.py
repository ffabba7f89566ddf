"""Agent backends: run a prompt with prior messages, return the reply text."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from hq.errors import ValidationFailed
from hq.models import Agent


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant"
    content: str


class AgentBackend(Protocol):
    def reply(self, agent: Agent, messages: list[ChatMessage]) -> str: ...


class BuiltinBackend:
    """Offline and deterministic, for development and tests; its output says so."""

    def reply(self, agent: Agent, messages: list[ChatMessage]) -> str:
        prompt = next((m.content for m in reversed(messages) if m.role == "user"), "")
        context = [m for m in messages[:-1] if m.role != "system"]
        digest = hashlib.sha256(prompt.encode()).hexdigest()[:8]
        words = len(prompt.split())
        return (
            f"[HQ built-in agent, offline] Prompt received ({words} words, ref {digest}). "
            f"Context: {len(context)} earlier message(s). "
            f"Configure an OpenAI-compatible agent for real answers.\n\n> {prompt[:500]}"
        )


_BACKENDS: dict[str, AgentBackend] = {Agent.Backend.BUILTIN: BuiltinBackend()}


def register_backend(name: str, backend: AgentBackend) -> None:
    """Add a backend (the OpenAI-compatible one registers itself where its package is installed)."""
    _BACKENDS[name] = backend


def run(agent: Agent, messages: list[ChatMessage]) -> str:
    """Return the agent's reply to `messages`."""
    backend = _BACKENDS.get(agent.backend)
    if backend is None:
        raise ValidationFailed(f"Agent backend '{agent.backend}' is not available.", code="agent_unavailable")
    return backend.reply(agent, messages)


def default_agent(workspace_id: UUID | str) -> Agent | None:
    """The workspace's default enabled agent."""
    return Agent.objects.filter(workspace_id=workspace_id, is_default=True, enabled=True).first()
