"""The /v1/queue API: thin views over queueapp services and selectors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from django.db.models import Model, QuerySet
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hq import permissions
from hq.api.fields import iso
from hq.api.pagination import paginate
from hq.api.permissions import principal_of
from queueapp import limits, observability, registry, selectors, services
from queueapp.api.filters import HITLFilter, JobFilter
from queueapp.api.serializers import (
    DepthOut,
    FunctionOut,
    HITLApproveIn,
    HITLRejectIn,
    HITLRequestOut,
    JobBatchIn,
    JobBatchOut,
    JobEventOut,
    JobOut,
    JobSubmitIn,
    JobSubmitOut,
    KeyDepthOut,
    QueueStateOut,
    WorkerOut,
    submit_parse,
    submitted_out,
)
from queueapp.models import HITLRequest, Job

UUID_RE = r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"

RowT = TypeVar("RowT", bound=Model)


class CallerRowsViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[RowT]):
    """List and retrieve what the caller may read: `visible` lists it (a selector that asks
    hq.permissions), `get_one` finds one by the URL's id or answers 404."""

    lookup_value_regex = UUID_RE
    # Narrower than GenericViewSet's: every subclass names both.
    serializer_class: type[serializers.ModelSerializer[RowT]]
    lookup_url_kwarg: str
    #: `(principal=)` -> the rows the caller may read.
    visible: Callable[..., QuerySet[RowT]]
    #: `(principal=, <lookup_url_kwarg>=)` -> one of them, else NotFound.
    get_one: Callable[..., RowT]
    order_by: tuple[str, ...]

    def get_queryset(self) -> QuerySet[RowT]:
        if getattr(self, "swagger_fake_view", False):
            model: type[RowT] = self.serializer_class.Meta.model
            return model._default_manager.none()
        return self.visible(principal=principal_of(self.request)).order_by(*self.order_by)

    def get_object(self) -> RowT:
        kwarg = self.lookup_url_kwarg
        return self.get_one(principal=principal_of(self.request), **{kwarg: self.kwargs[kwarg]})


class JobViewSet(CallerRowsViewSet[Job]):
    """Submit, list, inspect, cancel and retry jobs."""

    serializer_class = JobOut
    filterset_class = JobFilter
    results_key = "jobs"
    lookup_url_kwarg = "job_id"
    visible = staticmethod(selectors.jobs_visible)
    get_one = staticmethod(selectors.job_get)
    order_by = ("-created_at", "id")
    required_scopes = {
        "list": "queue:read",
        "retrieve": "queue:read",
        "events": "queue:read",
        "create": "queue:write",
        "batch": "queue:write",
        "cancel": "queue:write",
        "retry": "queue:write",
    }

    @extend_schema(
        request=JobSubmitIn,
        responses={
            202: JobSubmitOut,
            200: OpenApiResponse(
                JobSubmitOut,
                description="Idempotent replay: the original job; or `duplicate`: the job holding the unique key.",
            ),
        },
        examples=[
            OpenApiExample(
                "echo",
                value={"function": "hq.echo", "args": {"hello": "world"}, "correlation_id": "order-42"},
                request_only=True,
            )
        ],
    )
    def create(self, request: Request) -> Response:
        caller = principal_of(request)
        values, errors = submit_parse(request.data)
        if errors:
            raise serializers.ValidationError(errors)
        answer = services.job_submit_outcome(
            workspace=caller.workspace, owner=caller.user, submission=services.Submission(**values)
        )
        return Response(
            submitted_out(answer.job, answer.duplicate, answer.replaced),
            status=status.HTTP_202_ACCEPTED if answer.created else status.HTTP_200_OK,
        )

    @extend_schema(
        request=JobBatchIn,
        responses={
            202: OpenApiResponse(JobBatchOut, description="Recorded (replays flagged `replayed`)."),
            200: OpenApiResponse(JobBatchOut, description="Every job was an idempotent replay."),
        },
    )
    @action(detail=False, methods=["post"], url_path="batch")
    def batch(self, request: Request) -> Response:
        caller = principal_of(request)
        body = request.data
        items = body.get("jobs") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise serializers.ValidationError({"jobs": ["A list of 1 to 1000 job submissions is required."]})
        if not 1 <= len(items) <= services.MAX_BATCH:
            raise serializers.ValidationError({"jobs": [f"Give 1 to {services.MAX_BATCH} jobs; got {len(items)}."]})
        submissions, errors = [], {}
        for index, item in enumerate(items):
            values, problems = submit_parse(item)
            errors.update({f"jobs.{index}.{key}": messages for key, messages in problems.items()})
            submissions.append(values)
        if errors:
            raise serializers.ValidationError(errors)
        answers = services.jobs_submit_many_outcomes(
            workspace=caller.workspace,
            owner=caller.user,
            submissions=[services.Submission(**values) for values in submissions],
        )
        out = [
            {**submitted_out(a.job, a.duplicate, a.replaced), "replayed": not (a.created or a.duplicate)}
            for a in answers
        ]
        fresh = any(a.created for a in answers)
        return Response({"jobs": out}, status=status.HTTP_202_ACCEPTED if fresh else status.HTTP_200_OK)

    @extend_schema(request=None, responses={200: JobOut})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, job_id: str) -> Response:
        job = services.job_cancel(job=self.get_object(), actor=principal_of(request).user)
        return Response(JobOut(job).data)

    @extend_schema(request=None, responses={200: JobOut})
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, job_id: str) -> Response:
        job = services.job_retry(job=self.get_object(), actor=principal_of(request).user)
        return Response(JobOut(job).data)

    @extend_schema(responses={200: JobEventOut(many=True)})
    @action(detail=True, methods=["get"], filterset_class=None)
    def events(self, request: Request, job_id: str) -> Response:
        job = self.get_object()
        return paginate(self, request, job.events.order_by("at", "id"), JobEventOut, "events")


class HITLViewSet(CallerRowsViewSet[HITLRequest]):
    """Human-in-the-loop requests: list (oldest first), inspect, approve, reject."""

    serializer_class = HITLRequestOut
    filterset_class = HITLFilter
    results_key = "requests"
    lookup_url_kwarg = "request_id"
    visible = staticmethod(selectors.hitl_visible)
    get_one = staticmethod(selectors.hitl_get)
    order_by = ("created_at", "id")
    required_scopes = {
        "list": "queue:read",
        "retrieve": "queue:read",
        "approve": "hitl:approve",
        "reject": "hitl:approve",
    }

    def _decide(self, request: Request, decision: str, body_class: type) -> Response:
        caller = principal_of(request)
        hitl = self.get_object()
        # 403 (role, self-approval) comes before 400 (body): check who before parsing what.
        permissions.ensure_may_decide_hitl(request=hitl, actor=caller.user, via=permissions.VIA_API)
        body = body_class(data=request.data)
        body.is_valid(raise_exception=True)
        hitl = services.hitl_decide(
            request=hitl, actor=caller.user, decision=decision, via="api", **body.validated_data
        )
        return Response(HITLRequestOut(hitl).data)

    @extend_schema(request=HITLApproveIn, responses={200: HITLRequestOut})
    @action(detail=True, methods=["post"], filterset_class=None)
    def approve(self, request: Request, request_id: str) -> Response:
        return self._decide(request, "approve", HITLApproveIn)

    @extend_schema(request=HITLRejectIn, responses={200: HITLRequestOut})
    @action(detail=True, methods=["post"], filterset_class=None)
    def reject(self, request: Request, request_id: str) -> Response:
        return self._decide(request, "reject", HITLRejectIn)


class CorrelationView(APIView):
    """Every job (that the caller may see) sharing a correlation id."""

    required_scopes = "queue:read"

    @extend_schema(responses={200: JobOut(many=True)}, parameters=None)
    def get(self, request: Request, correlation_id: str) -> Response:
        rows = selectors.jobs_visible(principal=principal_of(request)).filter(correlation_id=correlation_id)
        return paginate(self, request, rows.order_by("created_at", "id"), JobOut, "jobs")


class DepthView(APIView):
    """Per-queue depth for the caller's workspace."""

    required_scopes = "queue:read"

    @extend_schema(responses={200: inline_serializer("Depth", {"queues": DepthOut(many=True)})})
    def get(self, request: Request) -> Response:
        return Response({"queues": selectors.queue_depth(workspace_id=principal_of(request).workspace_id)})


class KeyDepthView(APIView):
    """Per concurrency key of the caller's workspace (waiting or running jobs): waiting, held back
    by a limit, running, and the key limit in force; the first 1,000 keys by name (admin: keys
    name other members' customers, and a member sees only their own jobs)."""

    required_scopes = "queue:read"

    @extend_schema(responses={200: inline_serializer("KeyDepth", {"keys": KeyDepthOut(many=True)})})
    def get(self, request: Request) -> Response:
        caller = principal_of(request)
        permissions.require_admin(caller)
        return Response({"keys": limits.key_depth(workspace_id=caller.workspace_id)})


class FunctionsView(APIView):
    """Registered functions, their queue and approval flag."""

    required_scopes = "queue:read"

    @extend_schema(responses={200: inline_serializer("Functions", {"functions": FunctionOut(many=True)})})
    def get(self, request: Request) -> Response:
        # The stub's Serializer takes one instance, though with many=True DRF takes a list.
        functions = FunctionOut(registry.functions(), many=True)  # type: ignore[arg-type]
        return Response({"functions": functions.data})


class WorkersView(APIView):
    """Live workers and their heartbeats (admin)."""

    required_scopes = "queue:read"

    @extend_schema(responses={200: inline_serializer("Workers", {"workers": WorkerOut(many=True)})})
    def get(self, request: Request) -> Response:
        caller = principal_of(request)
        permissions.require_admin(caller)
        running = selectors.running_by_worker(workspace_id=caller.workspace_id)
        workers = list(selectors.workers_live())
        for w in workers:
            w.running = running.get(w.id, 0)
        # The stub's Serializer takes one instance, though with many=True DRF takes a list.
        return Response({"workers": WorkerOut(workers, many=True).data})  # type: ignore[arg-type]


class QueuePauseView(APIView):
    """Pause (or resume) a queue for the caller's workspace (admin)."""

    required_scopes = "queue:write"
    resume = False

    @extend_schema(request=None, responses={200: QueueStateOut})
    def post(self, request: Request, queue: str) -> Response:
        caller = principal_of(request)
        permissions.require_admin(caller)
        if self.resume:
            services.queue_resume(queue=queue, workspace=caller.workspace)
        else:
            services.queue_pause(queue=queue, workspace=caller.workspace, actor=caller.user)
        return Response({"queue": queue, "paused": not self.resume})


def _api_json(value: Any) -> Any:
    """Datetimes as RFC 3339 UTC (`iso`), UUIDs as strings, containers walked."""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, dict):
        return {str(k): _api_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_api_json(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


class ObservabilitySummaryView(APIView):
    """Counts, throughput, failure rate and wait/run percentiles per queue and function over 5 min, 1 h
    and 24 h; HITL pending; schedules by state with fire lag. The caller's workspace only (admin)."""

    required_scopes = "queue:read"

    @extend_schema(
        responses={
            200: OpenApiResponse(
                inline_serializer(
                    "ObservabilitySummary",
                    {
                        "generated_at": serializers.CharField(),
                        "windows": serializers.ListField(child=serializers.CharField()),
                        "queues": serializers.ListField(child=serializers.DictField()),
                        "hitl": serializers.DictField(),
                        "schedules": serializers.DictField(),
                    },
                ),
                description="See the README's Observability section for every field.",
            )
        }
    )
    def get(self, request: Request) -> Response:
        caller = principal_of(request)
        permissions.require_admin(caller)
        body = observability.summary(workspace_ids=[caller.workspace_id])
        return Response(_api_json(body))
