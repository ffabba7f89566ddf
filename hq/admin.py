"""Admin pages for tenancy, users, tokens and agents."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.core.exceptions import ValidationError
from django.db import models
from django.forms.fields import InvalidJSONInput, JSONString
from django.http import HttpRequest

from hq import services, tokens
from hq.display import clip_json
from hq.errors import HQError
from hq.jsonguard import load_json
from hq.models import (
    Agent,
    Conversation,
    ConversationMessage,
    Membership,
    Note,
    PersonalAccessToken,
    Plan,
    Room,
    RoomMessage,
    StoredQuery,
    User,
    Workspace,
)
from hq.scopes import ALL_SCOPES


class GuardedJSONField(forms.JSONField):
    """The admin's JSON inputs pass the same input guard as API bodies (hq.jsonguard).

    Django's own field calls `json.loads` on whatever is typed: 50,000 nested brackets raised
    RecursionError, and a NUL or a lone surrogate was refused by PostgreSQL; both were a 500.
    Stored values are shown clipped at the guard's depth, so an old over-deep row still renders.
    """

    def to_python(self, value: Any) -> Any:
        if self.disabled or value in self.empty_values or not isinstance(value, str):
            return super().to_python(value)
        try:
            converted = load_json(value, subject="The value")
        except HQError as exc:
            raise ValidationError(exc.message, code="invalid", params={"value": value}) from exc
        return JSONString(converted) if isinstance(converted, str) else converted

    def bound_data(self, data: Any, initial: Any) -> Any:
        if self.disabled or data is None:
            return super().bound_data(data, initial)
        try:
            return load_json(data)
        except HQError:
            return InvalidJSONInput(data)

    def prepare_value(self, value: Any) -> Any:
        return value if isinstance(value, InvalidJSONInput) else super().prepare_value(clip_json(value))

    def has_changed(self, initial: Any, data: Any) -> bool:
        return super().has_changed(clip_json(initial), data)


GUARDED_JSON = {models.JSONField: {"form_class": GuardedJSONField}}


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ["email"]
    list_display = ["email", "display_name", "is_staff", "is_superuser", "is_active", "date_joined"]
    list_filter = ["is_staff", "is_superuser", "is_active"]
    search_fields = ["email", "display_name"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("display_name",)}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "display_name", "password1", "password2")}),)


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ["name", "max_schedules"]
    search_fields = ["name"]


@admin.register(Workspace)
class WorkspaceAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "locale", "plan", "created_at"]
    list_filter = ["plan"]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]

    def save_model(self, request: HttpRequest, obj: Workspace, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if not change and not obj.agents.filter(is_default=True).exists():
            services.agent_create_default(workspace=obj)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "workspace", "role", "created_at"]
    list_filter = ["role", "workspace"]
    search_fields = ["user__email", "workspace__slug"]
    autocomplete_fields = ["user", "workspace"]


class TokenForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=[(s, s) for s in ALL_SCOPES],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="None ticked: every scope.",
    )

    class Meta:
        model = PersonalAccessToken
        fields = ["user", "workspace", "name", "scopes", "expires_at", "revoked_at"]


@admin.register(PersonalAccessToken)
class TokenAdmin(admin.ModelAdmin):
    form = TokenForm
    list_display = ["prefix", "user", "workspace", "name", "created_at", "expires_at", "revoked_at", "last_used_at"]
    list_filter = ["workspace", "revoked_at"]
    search_fields = ["prefix", "user__email", "name"]
    readonly_fields = ["prefix", "token_hash", "created_at", "last_used_at"]
    autocomplete_fields = ["user", "workspace"]
    actions = ["revoke"]

    def save_model(self, request: HttpRequest, obj: PersonalAccessToken, form: Any, change: bool) -> None:
        obj.scopes = services.scopes_validate(form.cleaned_data.get("scopes") or [])
        if not change:
            clear = tokens.generate()
            obj.prefix, obj.token_hash = tokens.display_prefix(clear), tokens.hash_token(clear)
            super().save_model(request, obj, form, change)
            self.message_user(
                request,
                f"New token (shown once, copy it now): {clear}",
                level=messages.WARNING,
            )
            return
        super().save_model(request, obj, form, change)

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request: HttpRequest, queryset: Any) -> None:
        count = 0
        for token in queryset:
            if token.revoked_at is None:
                services.token_revoke(token=token)
                count += 1
        self.message_user(request, f"Revoked {count} token(s).")


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ["name", "workspace", "backend", "model", "enabled", "is_default"]
    list_filter = ["backend", "enabled", "is_default", "workspace"]
    search_fields = ["name", "workspace__slug"]


class RoomMessageInline(admin.TabularInline):
    model = RoomMessage
    extra = 0
    fields = ["created_at", "kind", "author", "agent", "msgtype", "body"]
    readonly_fields = fields
    ordering = ["-created_at"]


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ["name", "workspace", "agent", "created_at"]
    list_filter = ["workspace"]
    search_fields = ["name"]
    filter_horizontal = ["members"]
    inlines = [RoomMessageInline]


@admin.register(Note)
class NoteAdmin(admin.ModelAdmin):
    formfield_overrides = GUARDED_JSON
    list_display = ["title", "workspace", "author", "created_at"]
    list_filter = ["workspace"]
    search_fields = ["title", "body"]


@admin.register(StoredQuery)
class StoredQueryAdmin(admin.ModelAdmin):
    formfield_overrides = GUARDED_JSON
    list_display = ["name", "workspace", "owner", "created_at"]
    search_fields = ["name"]


class ConversationMessageInline(admin.TabularInline):
    model = ConversationMessage
    extra = 0
    fields = ["created_at", "role", "agent", "body", "fire_id"]
    readonly_fields = fields


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["title", "owner", "workspace", "schedule_id", "updated_at"]
    list_filter = ["workspace"]
    search_fields = ["title", "owner__email", "schedule_id"]
    inlines = [ConversationMessageInline]
