"""The actions registry: what a schedule does when it fires. Plugins register their own."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from rest_framework import serializers

from hq.errors import ValidationFailed
from hq.models import User, Workspace

#: Surfaces: "tasks" actions appear on /v1/scheduled-tasks, "agent" ones on /v1/api/schedules.
SURFACES = ("tasks", "agent")


@dataclass
class ActionResult:
    """What a fire produced; an action signals failure by raising."""

    detail: str = ""
    conversation_id: UUID | None = None
    #: The fire ends later (a delivery job finishes it), not when the action returns.
    pending: bool = False


@dataclass(frozen=True)
class Action:
    name: str
    fn: Callable[..., ActionResult]
    args_schema: type[serializers.Serializer[Any]]
    surface: str = "tasks"
    description: str = ""


_actions: dict[str, Action] = {}


def schedule_action(
    name: str, *, args_schema: type[serializers.Serializer[Any]], surface: str = "tasks"
) -> Callable[[Callable[..., ActionResult]], Callable[..., ActionResult]]:
    """Register `fn(schedule, fire, args) -> ActionResult` as action `name`.

    :param args_schema: a DRF serializer; it validates args at create/update time and again at fire
        time, with `context={"workspace", "owner"}` so it can check that ids belong to the owner.
    :param surface: "tasks" (scheduled tasks) or "agent" (agent schedules).
    """
    if surface not in SURFACES:
        raise ValueError(f"surface must be one of {SURFACES}")

    def register(fn: Callable[..., ActionResult]) -> Callable[..., ActionResult]:
        _actions[name] = Action(
            name=name,
            fn=fn,
            args_schema=args_schema,
            surface=surface,
            description=(fn.__doc__ or "").strip().split("\n")[0],
        )
        return fn

    return register


def get(name: str) -> Action | None:
    return _actions.get(name)


def names(surface: str | None = None) -> list[str]:
    return sorted(n for n, a in _actions.items() if surface is None or a.surface == surface)


def validate_args(action_name: str, args: Any, *, workspace: Workspace, owner: User) -> dict[str, Any]:
    """Return the action's validated args, or raise ValidationFailed with `args.<field>` errors."""
    action = _actions.get(action_name)
    if action is None:
        raise ValidationFailed(
            f"Unknown action '{action_name}'. Known: {', '.join(names())}.", fields={"action": ["Unknown action."]}
        )
    if not isinstance(args, dict):
        raise ValidationFailed("args must be a JSON object.", fields={"args": ["Must be a JSON object."]})
    schema = action.args_schema(data=args, context={"workspace": workspace, "owner": owner})
    if not schema.is_valid():
        from hq.api.errors import flatten_errors

        flat = flatten_errors(schema.errors)
        fields = {f"args.{k}": v for k, v in flat.items()} if isinstance(flat, dict) else {"args": flat}
        first = next(iter(fields.items()))
        raise ValidationFailed(f"Invalid args for {action_name}: {first[0]}: {first[1][0]}", fields=fields)
    validated: dict[str, Any] = _plain(schema.validated_data)
    return validated


def _plain(value: Any) -> Any:
    """Validated data as JSON-ready values (UUIDs and datetimes to strings)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, UUID):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
