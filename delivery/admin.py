"""Deliveries in the ops console: read-only, each with its attempts.

A superuser sees every delivery; other staff see those of the workspaces they belong to.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from delivery.models import Delivery, DeliveryAttempt
from hq.display import pretty_json
from hq.models import Membership


class ReadOnlyMixin:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class DeliveryAttemptInline(ReadOnlyMixin, admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = ["number", "outcome", "status_code", "error", "retry_after_s", "at"]
    readonly_fields = fields
    ordering = ["number"]


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["kind", "status", "attempts", "created_at", "source", "workspace", "next_attempt_at"]
    list_filter = ["kind", "status"]
    search_fields = ["=source_id", "=external_id"]
    search_help_text = "Source id or external id (exact)."
    list_select_related = ["workspace"]
    date_hierarchy = "created_at"
    inlines = [DeliveryAttemptInline]
    fields = [
        "id",
        "workspace",
        ("source_kind", "source_id"),
        ("kind", "destination_pretty"),
        ("status", "attempts", "next_attempt_at"),
        "last_error",
        ("external_id", "delivered_at"),
        "conversation_id",
        "header",
        "body",
        ("created_at", "updated_at"),
    ]
    readonly_fields = [
        "id",
        "workspace",
        "source_kind",
        "source_id",
        "kind",
        "destination_pretty",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
        "external_id",
        "delivered_at",
        "conversation_id",
        "header",
        "body",
        "created_at",
        "updated_at",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Delivery]:
        rows = super().get_queryset(request)
        if request.user.is_superuser:
            return rows
        return rows.filter(workspace_id__in=Membership.objects.filter(user_id=request.user.pk).values("workspace_id"))

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        user = request.user
        if not (user.is_active and user.is_staff):
            return False
        if user.is_superuser or obj is None:
            return True
        return Membership.objects.filter(user_id=user.pk, workspace_id=obj.workspace_id).exists()

    @admin.display(description="source")
    def source(self, obj: Delivery) -> str:
        return f"{obj.source_kind} {obj.source_id}"

    @admin.display(description="destination")
    def destination_pretty(self, obj: Delivery) -> str:
        return format_html("<pre>{}</pre>", pretty_json(obj.destination, sort_keys=False))
