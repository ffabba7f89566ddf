"""Agent schedules' action: run the agent's prompt, keep the conversation, deliver the output."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import transaction
from rest_framework import serializers

from hq import agents, clock
from hq.errors import ValidationFailed
from hq.models import Agent, Conversation, ConversationMessage
from hq.selectors import agent_find, agent_get
from queueapp import enqueue
from queueapp.registry import JobContext, job_function
from schedules import fires
from schedules.actions import ActionResult, schedule_action
from schedules.models import FireStatus, Schedule, ScheduleFire

DELIVER_FUNCTION = "schedules.deliver"
SOURCE_KIND = "schedule_fire"
#: Prior messages given to the agent as context when a schedule keeps one thread.
HISTORY_MESSAGES = 20


class RunAgentArgs(serializers.Serializer[Any]):
    prompt = serializers.CharField(max_length=20000, help_text="The instruction the agent runs on each fire.")
    agent_id = serializers.UUIDField(required=False, allow_null=True, default=None)
    deliver_to = serializers.JSONField()
    reset_each_fire = serializers.BooleanField(required=False, default=False)
    delivery_locale = serializers.CharField(required=False, allow_null=True, default=None, max_length=35)

    def validate_agent_id(self, value: Any) -> Any:
        workspace = self.context["workspace"]
        if value is None:
            if agent_find(workspace_id=workspace.pk) is None:
                raise ValidationFailed(
                    "The workspace has no enabled default agent; pass agent_id.",
                    code="no_default_agent",
                    fields={"agent_id": ["No enabled default agent in this workspace."]},
                )
            return None
        agent = agent_get(
            workspace_id=workspace.pk,
            agent_id=value,
            message="No such agent in this workspace.",
            code="agent_not_found",
        )
        if not agent.enabled:
            raise serializers.ValidationError("The agent is disabled.")
        return value

    def validate_deliver_to(self, value: Any) -> dict[str, Any]:
        from delivery.destinations import validate_destination

        return validate_destination(value)

    def validate_delivery_locale(self, value: Any) -> Any:
        from delivery.formatting import validate_locale

        return validate_locale(value) if value else None


def _agent_for(schedule: Schedule, args: dict[str, Any]) -> Agent:
    agent = agent_find(workspace_id=schedule.workspace_id, agent_id=args.get("agent_id"))
    if agent is None or not agent.enabled:
        raise ValidationFailed("No enabled agent to run this schedule.", code="no_default_agent")
    return agent


def _thread(schedule: Schedule, fire: ScheduleFire, reset: bool) -> tuple[Conversation, list[ConversationMessage]]:
    """The schedule's persistent conversation and its recent messages, or a fresh one per fire."""
    conversation = None
    if not reset:
        conversation = Conversation.objects.filter(schedule_id=schedule.pk).order_by("-created_at").first()
    if conversation is None:
        title = schedule.name if not reset else f"{schedule.name} · {fire.slot:%Y-%m-%d %H:%M}Z"
        conversation = Conversation.objects.create(
            workspace_id=schedule.workspace_id, owner_id=schedule.owner_id, title=title[:300], schedule_id=schedule.pk
        )
        return conversation, []
    recent = list(conversation.messages.order_by("-created_at", "-id")[:HISTORY_MESSAGES])[::-1]
    return conversation, recent


@schedule_action("run_agent", args_schema=RunAgentArgs, surface="agent")
def run_agent(schedule: Schedule, fire: ScheduleFire, args: dict[str, Any]) -> ActionResult:
    """Run the schedule's prompt on its agent and deliver the reply."""
    from delivery import services as delivery_services
    from delivery.formatting import delivery_header

    agent = _agent_for(schedule, args)
    conversation, history = _thread(schedule, fire, bool(args.get("reset_each_fire")))
    messages = [agents.ChatMessage("system", agent.system_prompt)] if agent.system_prompt else []
    messages += [agents.ChatMessage(m.role, m.body) for m in history if m.role in ("user", "assistant")]
    messages.append(agents.ChatMessage("user", args["prompt"]))
    ConversationMessage.objects.create(conversation=conversation, role="user", body=args["prompt"], fire_id=fire.pk)
    reply = agents.run(agent, messages)
    now = clock.now()
    with transaction.atomic():
        ConversationMessage.objects.create(
            conversation=conversation, role="assistant", body=reply, fire_id=fire.pk, agent=agent, created_at=now
        )
        Conversation.objects.filter(pk=conversation.pk).update(updated_at=now)
        header = delivery_header(
            schedule_name=schedule.name,
            slot=fire.slot,
            tz=schedule.trigger["tz"],
            locale=args.get("delivery_locale") or schedule.workspace.locale,
        )
        delivery = delivery_services.delivery_create(
            workspace=schedule.workspace,
            source_kind=SOURCE_KIND,
            source_id=fire.pk,
            destination=args["deliver_to"],
            header=header,
            body=reply,
            conversation_id=conversation.pk,
        )
        pending = delivery.status == "pending"
        if pending:
            enqueue.jobs_create([_deliver_spec(schedule, fire, delivery.pk)])
    return ActionResult(detail=f"delivery {delivery.pk}", conversation_id=conversation.pk, pending=pending)


def _deliver_spec(schedule: Schedule, fire: ScheduleFire, delivery_id: Any, delay_s: float = 0.0) -> enqueue.JobSpec:
    return enqueue.JobSpec(
        workspace_id=schedule.workspace_id,
        owner_id=schedule.owner_id,
        function=DELIVER_FUNCTION,
        args={"delivery_id": str(delivery_id), "fire_id": str(fire.pk)},
        correlation_id=f"schedule:{schedule.pk}",
        due_at=clock.now() + timedelta(seconds=delay_s) if delay_s else None,
    )


def _locked_fire(fire_id: Any) -> ScheduleFire | None:
    """The fire (with its schedule), row-locked for the caller's transaction; None when gone."""
    return (
        ScheduleFire.objects.select_for_update(of=("self",), no_key=True)
        .select_related("schedule")
        .filter(pk=fire_id)
        .first()
    )


def _owner_departed_before_delivery(*, delivery_id: Any, fire_id: Any) -> bool:
    """Deliver nothing for an owner who left the workspace or was deactivated since the fire ran:
    the schedule is quarantined, the fire skipped and the delivery abandoned."""
    from delivery import services as delivery_services

    with transaction.atomic():
        fire = _locked_fire(fire_id)
        if fire is None or fire.status != FireStatus.RUNNING:
            return False
        reason = fires.fire_stop_for_departed_owner(fire, outcome="Nothing was delivered.")
        if reason:
            delivery_services.delivery_abandon(delivery_id=delivery_id, reason=f"Not delivered: {reason}")
    return bool(reason)


def deliver_run(*, delivery_id: Any, fire_id: Any) -> str:
    """One delivery attempt; a retryable failure re-defers a new job instead of sleeping in a worker slot."""
    from delivery import services as delivery_services

    if _owner_departed_before_delivery(delivery_id=delivery_id, fire_id=fire_id):
        return "failed"
    result = delivery_services.delivery_attempt(delivery_id=delivery_id)
    with transaction.atomic():
        fire = _locked_fire(fire_id)
        if fire is None:
            return result.status
        if result.status == "retry":
            enqueue.jobs_create([_deliver_spec(fire.schedule, fire, delivery_id, delay_s=result.retry_after_s or 1.0)])
            return "retry"
        if fire.status == FireStatus.RUNNING:
            status = FireStatus.SUCCEEDED if result.status == "delivered" else FireStatus.FAILED
            error = "" if status == FireStatus.SUCCEEDED else f"Delivery failed: {result.error}"
            fires.finish_fire(fire, status, error=error, conversation_id=fire.conversation_id)
    return result.status


@job_function(DELIVER_FUNCTION, internal=True, max_tries=2, timeout=120)
def deliver(ctx: JobContext) -> dict[str, Any]:
    """Deliver an agent schedule's output (engine-only)."""
    return {"status": deliver_run(delivery_id=ctx.args["delivery_id"], fire_id=ctx.args["fire_id"])}
