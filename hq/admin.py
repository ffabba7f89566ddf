"""Admin pages for tenancy, users, tokens and agents, each scoped by `hq.admin_scoping`.

Staff who are not superusers see the workspaces they administer: their users (read-only: a user
may belong to other workspaces too), memberships, tokens, agents, rooms, notes, stored queries and
conversations. Plans and groups apply to every workspace and are for superusers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import GroupAdmin as BaseGroupAdmin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import QuerySet
from django.forms.fields import InvalidJSONInput, JSONString
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse

from hq import admin_actions, services, tokens
from hq.admin_scoping import WorkspaceScopedAdmin, WorkspaceScopedTabularInline, admin_user
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
from hq.permissions import staff_covers_all
from hq.scopes import ALL_SCOPES

if TYPE_CHECKING:
    # Django's form and admin classes are generic only in django-stubs: subscripting them at run
    # time needs django_stubs_ext.monkeypatch(), which the settings do not call.
    _MembershipForm = forms.ModelForm[Membership]
    _TokenForm = forms.ModelForm[PersonalAccessToken]
    _MembershipFormSet = BaseInlineFormSet[Membership, Workspace, forms.ModelForm[Membership]]
    # The stub bounds UserAdmin's model to AbstractUser; Django's needs only the fields it names.
    _UserAdmin = BaseUserAdmin[User]  # type: ignore[type-var]
else:
    _MembershipForm = _TokenForm = forms.ModelForm
    _MembershipFormSet = BaseInlineFormSet
    _UserAdmin = BaseUserAdmin


def _covers_all(request: HttpRequest) -> bool:
    """`staff_covers_all` for the request's user; nobody signed in covers nothing."""
    user = admin_user(request)
    return user is not None and staff_covers_all(user)


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

    def __init__(self, *, indent: int | None = None, **kwargs: Any) -> None:
        """:param indent: indent the JSON shown in the input by this many spaces (None: one line)."""
        super().__init__(**kwargs)
        self.indent = indent

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, InvalidJSONInput):
            return value
        return json.dumps(clip_json(value), ensure_ascii=False, cls=self.encoder, indent=self.indent)

    def has_changed(self, initial: Any, data: Any) -> bool:
        return super().has_changed(clip_json(initial), data)


GUARDED_JSON: Mapping[type[models.Field[Any, Any]], Mapping[str, Any]] = {
    models.JSONField: {"form_class": GuardedJSONField}
}


class MembershipInlineForm(_MembershipForm):
    """A row of a workspace's members: its user is fixed once saved (ending it has consequences)."""

    class Meta:
        model = Membership
        fields = ["user", "role"]

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean()
        if self.instance.pk and "user" in self.changed_data:
            self.add_error(
                "user",
                "A membership's user cannot be swapped: delete this row (the member leaves the workspace) "
                "and add a new one.",
            )
        return cleaned


class MembershipFormSet(_MembershipFormSet):
    """Deleting a row ends the membership through `membership_end`, never a bare delete."""

    actor: User | None = None

    def delete_existing(self, obj: Membership, commit: bool = True) -> None:
        if commit:
            services.membership_end(membership=obj, actor=self.actor)


class MembershipInline(WorkspaceScopedTabularInline):
    model = Membership
    form = MembershipInlineForm
    formset = MembershipFormSet
    extra = 0
    autocomplete_fields = ["user"]
    users_must_be_members = False  # this is what makes them members


admin.site.unregister(Group)


@admin.register(Group)
class GroupAdmin(WorkspaceScopedAdmin, BaseGroupAdmin):
    """Groups of model permissions apply across workspaces: superusers only."""

    workspace_path = None


@admin.register(User)
class UserAdmin(WorkspaceScopedAdmin, _UserAdmin):
    """Users who share a workspace with the staff user; only superusers add, edit or delete users,
    since a user may belong to workspaces the staff user does not administer (and a staff user
    must not be able to edit their own flags)."""

    workspace_path = "memberships__workspace"
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
    staff_fieldsets = (
        (None, {"fields": ("email",)}),
        ("Profile", {"fields": ("display_name",)}),
        ("Status", {"fields": ("is_active", "is_staff", "last_login", "date_joined")}),
    )

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is not None and not _covers_all(request):
            return self.staff_fieldsets  # no password hash, no permissions
        return super().get_fieldsets(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return _covers_all(request) and super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _covers_all(request) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _covers_all(request) and super().has_delete_permission(request, obj)

    actions = ["deactivate_selected"]
    deactivate_template = "admin/hq/user/deactivate_confirmation.html"

    # Deactivating and deleting go through the services, so the user's schedules are quarantined
    # and their pending approval requests expire whichever way it is done here.

    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        deactivating = change and "is_active" in form.changed_data and not obj.is_active
        super().save_model(request, obj, form, change)
        if deactivating:
            services.user_deactivate(user=obj, actor=admin_actions.actor(request))

    def delete_model(self, request: HttpRequest, obj: User) -> None:
        services.user_delete(user=obj, actor=admin_actions.actor(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset:
            services.user_delete(user=user, actor=admin_actions.actor(request))

    @admin.action(description="Deactivate selected users…", permissions=["change"])
    def deactivate_selected(self, request: HttpRequest, queryset: QuerySet[User]) -> HttpResponse | None:
        users = list(queryset.prefetch_related("memberships__workspace"))
        if admin_actions.confirmed(request):
            done = 0
            for user in users:
                if user.pk == request.user.pk:
                    self.message_user(request, "You cannot deactivate yourself.", messages.ERROR)
                    continue
                services.user_deactivate(user=user, actor=admin_actions.actor(request))
                admin_actions.log_done(request, user, "Deactivated")
                done += 1
            if done:
                self.message_user(
                    request,
                    f"Deactivated {done} user(s): their tokens stop working, their schedules are quarantined "
                    "and their pending approval requests expired.",
                    messages.SUCCESS,
                )
            return None
        return admin_actions.confirmation_page(
            self,
            request,
            template=self.deactivate_template,
            verb="Deactivate",
            objects=users,
            action="deactivate_selected",
            confirm_id="confirm-deactivate",
        )


@admin.register(Plan)
class PlanAdmin(WorkspaceScopedAdmin):
    """Plans apply across workspaces: superusers only."""

    workspace_path = None
    list_display = ["name", "max_schedules"]
    search_fields = ["name"]


@admin.register(Workspace)
class WorkspaceAdmin(WorkspaceScopedAdmin):
    """The workspaces the staff user administers; only superusers create them or change their plan."""

    workspace_path = "id"
    list_display = ["slug", "name", "locale", "plan", "created_at"]
    list_filter = ["plan"]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return _covers_all(request) and super().has_add_permission(request)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))
        return fields if _covers_all(request) else [*fields, "plan"]

    def save_model(self, request: HttpRequest, obj: Workspace, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if not change and not obj.agents.filter(is_default=True).exists():
            services.agent_create_default(workspace=obj)

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        if isinstance(formset, MembershipFormSet):
            formset.actor = admin_actions.actor(request)
        super().save_formset(request, form, formset, change)


@admin.register(Membership)
class MembershipAdmin(WorkspaceScopedAdmin):
    users_must_be_members = False  # this is what makes them members
    list_display = ["user", "workspace", "role", "created_at"]
    list_filter = ["role", "workspace"]
    search_fields = ["user__email", "workspace__slug"]
    autocomplete_fields = ["user", "workspace"]

    # Ending a membership goes through `membership_end` (tokens revoked, schedules quarantined,
    # approval requests expired); a saved membership's user and workspace never change.

    def get_readonly_fields(self, request: HttpRequest, obj: Membership | None = None) -> list[str]:
        return ["user", "workspace"] if obj is not None else []

    def delete_model(self, request: HttpRequest, obj: Membership) -> None:
        services.membership_end(membership=obj, actor=admin_actions.actor(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Membership]) -> None:
        for membership in queryset:
            services.membership_end(membership=membership, actor=admin_actions.actor(request))


class TokenForm(_TokenForm):
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
class TokenAdmin(WorkspaceScopedAdmin):
    """Tokens of the workspaces the staff user administers. A new token's workspace must be one of
    those and its user a member of it (the form refuses anything else, whatever was posted); a
    token's user and workspace never change afterwards."""

    form = TokenForm
    list_display = ["prefix", "user", "workspace", "name", "created_at", "expires_at", "revoked_at", "last_used_at"]
    list_filter = ["workspace", "revoked_at"]
    search_fields = ["prefix", "user__email", "name"]
    readonly_fields = ["prefix", "token_hash", "created_at", "last_used_at"]
    autocomplete_fields = ["user", "workspace"]
    actions = ["revoke"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))
        return fields if obj is None else [*fields, "user", "workspace"]

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
class AgentAdmin(WorkspaceScopedAdmin):
    list_display = ["name", "workspace", "backend", "model", "enabled", "is_default"]
    list_filter = ["backend", "enabled", "is_default", "workspace"]
    search_fields = ["name", "workspace__slug"]


class RoomMessageInline(WorkspaceScopedTabularInline):
    workspace_path = "room__workspace"
    model = RoomMessage
    extra = 0
    fields = readonly_fields = ("created_at", "kind", "author", "agent", "msgtype", "body")
    ordering = ["-created_at"]


@admin.register(Room)
class RoomAdmin(WorkspaceScopedAdmin):
    list_display = ["name", "workspace", "agent", "created_at"]
    list_filter = ["workspace"]
    search_fields = ["name"]
    filter_horizontal = ["members"]
    inlines = [RoomMessageInline]


@admin.register(Note)
class NoteAdmin(WorkspaceScopedAdmin):
    formfield_overrides = GUARDED_JSON
    list_display = ["title", "workspace", "author", "created_at"]
    list_filter = ["workspace"]
    search_fields = ["title", "body"]


@admin.register(StoredQuery)
class StoredQueryAdmin(WorkspaceScopedAdmin):
    formfield_overrides = GUARDED_JSON
    list_display = ["name", "workspace", "owner", "created_at"]
    search_fields = ["name"]


class ConversationMessageInline(WorkspaceScopedTabularInline):
    workspace_path = "conversation__workspace"
    model = ConversationMessage
    extra = 0
    fields = readonly_fields = ("created_at", "role", "agent", "body", "fire_id")


@admin.register(Conversation)
class ConversationAdmin(WorkspaceScopedAdmin):
    list_display = ["title", "owner", "workspace", "schedule_id", "updated_at"]
    list_filter = ["workspace"]
    search_fields = ["title", "owner__email", "schedule_id"]
    inlines = [ConversationMessageInline]
