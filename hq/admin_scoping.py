"""One workspace scope for every admin page, whatever Django model permissions a staff user holds.

Every `ModelAdmin` and inline of every app derives from `WorkspaceScoped`. The rule itself is
`hq.permissions.staff_workspace_ids`: a superuser covers every workspace; other staff the workspaces
where they are an admin member, and nothing else. Model permissions can narrow what a staff user
may do inside that scope, never widen it. The mixin applies the scope to:

- the rows: changelists, search, change, delete and history pages (`get_queryset`); a row outside
  the scope is "doesn't exist", never 403, so its existence does not leak;
- the permissions: no page at all for staff who cover no workspace; models that belong to no
  workspace (plans, groups, workers) are for superusers;
- the choices: every ForeignKey and ManyToMany select, autocomplete included, offers only rows in
  scope, and a posted id outside them is a form error;
- the list filters: a filter on a related field lists only values that occur in the rows in scope;
- the writes: an object's users must be members of its workspace and its related rows must belong
  to it, checked on the form (for superusers too: nothing crosses workspaces).

`hq` imports none of the apps; `queueapp`, `schedules` and `delivery` import this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from django.contrib import admin
from django.contrib.admin.options import BaseModelAdmin
from django.contrib.admin.utils import get_fields_from_path
from django.db.models import Model, QuerySet
from django.forms import BaseForm, ModelForm
from django.http import HttpRequest

from hq.models import Membership, User, Workspace
from hq.permissions import staff_admitted, staff_workspace_ids

if TYPE_CHECKING:
    # Django's admin and form classes are generic only in django-stubs (see hq.admin). One scoped
    # admin class serves the models of every app, each named by a subclass, so the model is Any.
    _BaseModelAdmin = BaseModelAdmin[Any]
    _ModelAdmin = admin.ModelAdmin[Any]
    _TabularInline = admin.TabularInline[Any, Any]
    _StackedInline = admin.StackedInline[Any, Any]
else:
    _BaseModelAdmin = BaseModelAdmin
    _ModelAdmin = admin.ModelAdmin
    _TabularInline = admin.TabularInline
    _StackedInline = admin.StackedInline

_CACHE_ATTR = "_hq_admin_workspace_ids"


def admin_user(request: HttpRequest) -> User | None:
    """The signed-in user of an admin request; None when nobody is signed in."""
    user = request.user
    return user if isinstance(user, User) else None


def request_workspace_ids(request: HttpRequest) -> list[UUID] | None:
    """`staff_workspace_ids` for the request's user, computed once per request (nobody signed in:
    no workspace)."""
    user = admin_user(request)
    pk = None if user is None else user.pk
    cached: tuple[UUID | None, list[UUID] | None] | None = getattr(request, _CACHE_ATTR, None)
    if cached is None or cached[0] != pk:
        cached = (pk, [] if user is None else staff_workspace_ids(user=user))
        setattr(request, _CACHE_ATTR, cached)
    return cached[1]


class WorkspaceScoped(_BaseModelAdmin):
    """Mixin for model admins and inlines: rows, permissions, choices and filters limited to the
    workspaces the staff user covers (see the module docstring)."""

    #: ORM path from the model to its workspace (`"workspace"`, `"job__workspace"`,
    #: `"memberships__workspace"`); None for models of no workspace, which only superusers see.
    workspace_path: str | None = "workspace"
    #: False for read-only console pages that need no Django model permissions (jobs, HITL,
    #: deliveries): anyone the scope admits may view them, nobody may add, change or delete.
    model_permissions: bool = True
    #: Whether users chosen on the form must be members of the object's workspace.
    users_must_be_members: bool = True

    # --- the scope ---------------------------------------------------------------------------------

    def workspace_ids(self, request: HttpRequest) -> list[UUID] | None:
        return request_workspace_ids(request)

    def scope_rows(self, request: HttpRequest, rows: QuerySet[Any]) -> QuerySet[Any]:
        """`rows` narrowed to the workspaces the user covers (all of them for a superuser)."""
        ids = self.workspace_ids(request)
        if ids is None:
            return rows
        if self.workspace_path is None or not ids:
            return rows.none()
        lookup = {f"{self.workspace_path}__in": ids}
        if self._path_is_multi_valued():
            # Through a reverse or many-to-many relation: a subquery, so no row is listed twice.
            return rows.filter(pk__in=rows.model._default_manager.filter(**lookup).values("pk"))
        return rows.filter(**lookup)

    def _path_is_multi_valued(self) -> bool:
        path = self.workspace_path
        if path is None or path in ("id", "pk"):
            return False
        return any(f.one_to_many or f.many_to_many for f in get_fields_from_path(self.model, path))

    def admits(self, request: HttpRequest) -> bool:
        """May the user open this page at all: active staff covering at least one workspace (a
        superuser always; for models of no workspace, only a superuser)."""
        user = admin_user(request)
        if user is None or not staff_admitted(user):
            return False
        ids = self.workspace_ids(request)
        return ids is None or (self.workspace_path is not None and bool(ids))

    def covers(self, request: HttpRequest, obj: Model | None) -> bool:
        """Is `obj` in the user's scope. An inline is asked about its parent, which the parent's
        own admin checks, so only objects of this admin's model are looked up."""
        if obj is None or not isinstance(obj, self.model) or self.workspace_ids(request) is None:
            return True
        return self.scope_rows(request, self.model._default_manager.filter(pk=obj.pk)).exists()

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return self.scope_rows(request, super().get_queryset(request))

    # --- permissions -------------------------------------------------------------------------------

    def has_module_permission(self, request: HttpRequest) -> bool:
        if not self.admits(request):
            return False
        return super().has_module_permission(request) if self.model_permissions else True

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if not (self.admits(request) and self.covers(request, obj)):
            return False
        return super().has_view_permission(request, obj) if self.model_permissions else True

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        # ModelAdmin takes (request); inlines take (request, obj).
        return self.model_permissions and self.admits(request) and super().has_add_permission(request, *args)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return (
            self.model_permissions
            and self.admits(request)
            and self.covers(request, obj)
            and super().has_change_permission(request, obj)
        )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return (
            self.model_permissions
            and self.admits(request)
            and self.covers(request, obj)
            and super().has_delete_permission(request, obj)
        )

    def has_operate_permission(self, request: HttpRequest) -> bool:
        """May run the page's state-changing actions (`@admin.action(permissions=["operate"])`): anyone
        the page admits, since every workspace they see is one they administer. The services check
        again, through hq.permissions, for each object."""
        return self.admits(request)

    # --- choices on forms --------------------------------------------------------------------------

    def get_field_queryset(self, db: Any, db_field: Any, request: HttpRequest) -> QuerySet[Any] | None:
        """Choices of a ForeignKey or ManyToMany field (select, filter_horizontal or autocomplete)."""
        rows = super().get_field_queryset(db, db_field, request)
        if self.workspace_ids(request) is None:
            return rows
        model = db_field.remote_field.model
        if rows is None:
            rows = model._default_manager.using(db).all()
        related = self.admin_site._registry.get(model)
        if isinstance(related, WorkspaceScoped):
            return related.scope_rows(request, rows)
        return rows.none()  # a model no scoped admin describes: nothing to offer

    def check_same_workspace(self, form: BaseForm) -> None:
        """Add a form error for every chosen user who is not a member of the object's workspace and
        every chosen row of another workspace. Applies to models with a `workspace` field."""
        if not hasattr(form, "instance") or not _has_field(self.model, "workspace"):
            return
        data = form.cleaned_data
        workspace = data.get("workspace") if "workspace" in form.fields else None
        if workspace is None:
            workspace_id = getattr(form.instance, "workspace_id", None)
        else:
            workspace_id = workspace.pk
        if workspace_id is None:
            return
        # Moving an object to another workspace re-checks every relation, not only those changed.
        names = list(form.fields) if "workspace" in form.changed_data else form.changed_data
        for name in names:
            if name == "workspace" or name not in data:
                continue
            value = data.get(name)
            items = list(value) if isinstance(value, QuerySet | list | tuple) else [value]
            for item in items:
                problem = self._outside_workspace(item, workspace_id)
                if problem:
                    form.add_error(name, problem)
                    break

    def _outside_workspace(self, item: Any, workspace_id: Any) -> str | None:
        if not isinstance(item, Model) or isinstance(item, Workspace):
            return None
        if isinstance(item, User):
            if not self.users_must_be_members:
                return None
            if Membership.objects.filter(user_id=item.pk, workspace_id=workspace_id).exists():
                return None
            return f"{item.email} is not a member of this workspace."
        related = self.admin_site._registry.get(type(item))
        path = getattr(related, "workspace_path", None)
        if not isinstance(related, WorkspaceScoped) or path is None or related._path_is_multi_valued():
            return None
        if type(item)._default_manager.filter(pk=item.pk, **{path: workspace_id}).exists():
            return None
        return f"“{item}” belongs to another workspace."


def _has_field(model: type[Model], name: str) -> bool:
    return any(f.name == name for f in model._meta.get_fields())


class WorkspaceScopedAdmin(WorkspaceScoped, _ModelAdmin):
    """A model admin scoped to the user's workspaces; its related-field filters list only values in scope."""

    def get_list_filter(self, request: HttpRequest) -> list[Any]:
        return scoped_list_filter(self.model, super().get_list_filter(request))

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> type[ModelForm[Any]]:
        return same_workspace_form(self, super().get_form(request, obj, change=change, **kwargs))


def scoped_list_filter(model: type[Model], specs: Any) -> list[Any]:
    """Turn every filter on a related field into Django's RelatedOnlyFieldListFilter, which lists the
    values that occur in the admin's (scoped) rows instead of the whole related table."""
    out: list[Any] = []
    for spec in specs:
        name, cls = (spec, None) if isinstance(spec, str) else (spec if isinstance(spec, tuple) else (None, spec))
        if name is not None and (cls is None or cls is admin.RelatedFieldListFilter):
            if get_fields_from_path(model, name)[-1].is_relation:
                spec = (name, admin.RelatedOnlyFieldListFilter)
        out.append(spec)
    return out


def same_workspace_form(model_admin: WorkspaceScoped, form: type[ModelForm[Any]]) -> type[ModelForm[Any]]:
    """`form` with `check_same_workspace` run after its own clean."""

    # mypy takes no base class that is known only at run time (here, the form Django built).
    class SameWorkspaceForm(form):  # type: ignore[misc, valid-type]
        def clean(self) -> dict[str, Any] | None:
            data: dict[str, Any] | None = super().clean()
            model_admin.check_same_workspace(self)
            return data

    SameWorkspaceForm.__name__ = form.__name__
    return SameWorkspaceForm


class WorkspaceScopedTabularInline(WorkspaceScoped, _TabularInline):
    """An inline scoped like its parent (set `workspace_path` through the parent, e.g. `room__workspace`)."""


class WorkspaceScopedStackedInline(WorkspaceScoped, _StackedInline):
    """As `WorkspaceScopedTabularInline`, stacked."""
