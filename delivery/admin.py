"""Deliveries in the ops console: read-only, each with its attempts.

Scoped by `hq.admin_scoping`: a superuser sees every delivery, other staff those of the workspaces
they administer; no Django model permissions are needed and nobody may add, change or delete.
"""

from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html

from delivery.models import Delivery, DeliveryAttempt
from hq.admin_scoping import WorkspaceScopedAdmin, WorkspaceScopedTabularInline
from hq.display import pretty_json


class DeliveryAttemptInline(WorkspaceScopedTabularInline):
    workspace_path = "delivery__workspace"
    model_permissions = False
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = readonly_fields = ("number", "outcome", "status_code", "error", "retry_after_s", "at")
    ordering = ["number"]


@admin.register(Delivery)
class DeliveryAdmin(WorkspaceScopedAdmin):
    model_permissions = False
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

    @admin.display(description="source")
    def source(self, obj: Delivery) -> str:
        return f"{obj.source_kind} {obj.source_id}"

    @admin.display(description="destination")
    def destination_pretty(self, obj: Delivery) -> str:
        return format_html("<pre>{}</pre>", pretty_json(obj.destination, sort_keys=False))
