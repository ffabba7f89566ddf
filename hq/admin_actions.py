"""Admin actions that change state, done the way Django's `delete_selected` does them: a
confirmation page first, then the service once per selected row, every refusal shown.

The action's first POST answers `confirmation_page(...)`: the rows, what the action will do, and a
form (drawn by `admin/action_confirmation.html`) that posts the same action and rows back with
`post=yes`. On that second POST, `confirmed(request)` is true and the action runs the service
through `apply_each`, which reports how many rows it changed and each refusal (`HQError`) as a
message; no row is skipped silently. Every app's admin uses these (jobs, HITL requests, users,
schedules), so the pages look and behave alike.

Every row an action changes gets an entry in its History page (`log_done`: Django's `LogEntry`,
by the signed-in user, "Approved: <comment>", "Paused"...), whichever page the action was done from.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.contrib import messages
from django.contrib.admin import ModelAdmin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from hq.admin_scoping import WorkspaceScopedAdmin, admin_user
from hq.errors import HQError
from hq.models import User

RowT = TypeVar("RowT", bound=Model)


@dataclass(frozen=True)
class Button(Generic[RowT]):
    """An action on rows (a bulk action, a button on a row's page): what its confirmation page and
    its message say, and its service, called as `run(row, actor)`.

    :param logged: what each row's History says was done ("Retried"); `done` when empty.
    """

    verb: str
    done: str
    consequence: str
    run: Callable[[RowT, User], object]
    logged: str = ""

    @property
    def log_message(self) -> str:
        return self.logged or self.done


def log_done(request: HttpRequest, obj: Model, message: str, *, added: bool = False) -> None:
    """Write the History entry of an action on `obj` by the signed-in user (a `LogEntry`): CHANGE,
    ADDITION when the action made the row (a queue's pause), DELETION when it removed it (an
    erased schedule). Pass a copy taken before the action for a row it may delete: Django clears
    a deleted instance's pk."""
    if not type(obj)._default_manager.filter(pk=obj.pk).exists():
        flag = DELETION
    else:
        flag = ADDITION if added else CHANGE
    LogEntry.objects.log_actions(
        user_id=actor(request).pk, queryset=[obj], action_flag=flag, change_message=message, single_object=True
    )


def actor(request: HttpRequest) -> User:
    """The user an action is done as: the signed-in user (the admin site lets only active staff in,
    so nobody signed in is refused rather than passed to a service as no actor)."""
    user = admin_user(request)
    if user is None:
        raise PermissionDenied
    return user


def confirmed(request: HttpRequest) -> bool:
    """Whether this POST comes from the confirmation page (rather than being the action's first)."""
    return bool(request.POST.get("post"))


def confirmation_page(
    model_admin: ModelAdmin[Any],
    request: HttpRequest,
    *,
    template: str,
    verb: str,
    objects: Sequence[Model],
    confirm_id: str,
    action: str = "",
    back_url: str | None = None,
    **context: Any,
) -> TemplateResponse:
    """The page that asks to confirm `action` on `objects`: "<verb> 2 schedules", "Yes, <verb>".

    :param template: extends `admin/action_confirmation.html` and fills its `confirmation_body`
        (and `confirmation_fields` for inputs sent with the confirmation, such as a comment).
    :param verb: what the action does, capitalised ("Approve", "Deactivate").
    :param confirm_id: the HTML id of the confirming button (browser tests click it).
    :param action: the admin action's name; empty when the page posts back to its own URL (a
        button on one object's page) instead of to the changelist.
    :param back_url: where "No, take me back" leads; the model's changelist by default.
    :param context: more template variables.
    """
    opts = model_admin.opts
    noun = opts.verbose_name if len(objects) == 1 else opts.verbose_name_plural
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": opts,
        "title": f"{verb} {len(objects)} {noun}",
        "objects": objects,
        "selected": [obj.pk for obj in objects],
        "action": action,
        "action_checkbox_name": ACTION_CHECKBOX_NAME,
        "confirm_label": f"Yes, {verb.lower()}",
        "confirm_id": confirm_id,
        "back_url": back_url
        or reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist", current_app=model_admin.admin_site.name),
        "media": model_admin.media,
        **context,
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, template, context)


def apply_each(
    model_admin: WorkspaceScopedAdmin,
    request: HttpRequest,
    rows: Iterable[RowT],
    call: Callable[[RowT], object],
    *,
    done: str,
    label: Callable[[RowT], str],
    logged: str,
) -> int:
    """Run `call(row)` for each row the user covers; show each refusal, then how many were done;
    each row changed gets a History entry saying `logged`.

    :param done: the message for the rows changed, with `{count}` (e.g. "Paused {count} schedule(s).").
    :param label: names a row in a refusal ("Job 6f1c...", a schedule's name).
    :param logged: what each changed row's History says ("Paused").
    :return: how many rows `call` went through for.
    """
    count = 0
    for row in rows:
        if not model_admin.covers(request, row):
            model_admin.message_user(request, f"{label(row)}: you are not an admin of its workspace.", messages.ERROR)
            continue
        before = copy.copy(row)  # keeps the pk should the service delete the row
        try:
            call(row)
        except HQError as exc:
            model_admin.message_user(request, f"{label(row)}: {exc.message}", messages.ERROR)
            continue
        log_done(request, before, logged)
        count += 1
    if count:
        model_admin.message_user(request, done.format(count=count), messages.SUCCESS)
    return count


def run_action(
    model_admin: WorkspaceScopedAdmin,
    request: HttpRequest,
    rows: Iterable[RowT],
    run: Callable[[RowT, User], object],
    *,
    template: str,
    verb: str,
    consequence: str,
    action: str,
    confirm_id: str,
    done: str,
    label: Callable[[RowT], str],
    logged: str,
) -> TemplateResponse | None:
    """A bulk action with its confirmation: the page first, then `run(row, actor)` for each row
    (`apply_each`, `logged` in each row's History) once confirmed. `rows` are listed on the page as
    they are given."""
    if not confirmed(request):
        return confirmation_page(
            model_admin,
            request,
            template=template,
            verb=verb,
            objects=list(rows),
            action=action,
            confirm_id=confirm_id,
            consequence=consequence,
        )
    user = actor(request)
    apply_each(model_admin, request, rows, lambda row: run(row, user), done=done, label=label, logged=logged)
    return None


def object_button(
    model_admin: WorkspaceScopedAdmin,
    request: HttpRequest,
    obj: RowT,
    run: Callable[[RowT, User], object],
    *,
    template: str,
    verb: str,
    consequence: str,
    confirm_id: str,
    done: str,
    label: Callable[[RowT], str],
    back_url: str,
    logged: str,
    done_url: str | None = None,
) -> HttpResponse:
    """A button on one object's page: its confirmation page (GET), then `run(obj, actor)` (POST,
    `logged` in its History), back to `back_url` (or `done_url` when the service went through)
    with the outcome as a message."""
    if request.method == "POST":
        user = actor(request)
        count = apply_each(
            model_admin, request, [obj], lambda row: run(row, user), done=done, label=label, logged=logged
        )
        return HttpResponseRedirect(done_url if count and done_url else back_url)
    return confirmation_page(
        model_admin,
        request,
        template=template,
        verb=verb,
        objects=[obj],
        confirm_id=confirm_id,
        back_url=back_url,
        consequence=consequence,
    )


def button_urls(
    model_admin: ModelAdmin[Any], names: Iterable[str], view: Callable[[HttpRequest, str, str], HttpResponse]
) -> list[URLPattern]:
    """`<object_id>/<name>/` for each button name, named `<app>_<model>_<name>`, staff only:
    `view(request, object_id, name)` answers it."""
    opts = model_admin.opts

    def bound(name: str) -> Callable[[HttpRequest, str], HttpResponse]:
        return lambda request, object_id: view(request, object_id, name)

    return [
        path(
            f"<path:object_id>/{name}/",
            model_admin.admin_site.admin_view(bound(name)),
            name=f"{opts.app_label}_{opts.model_name}_{name}",
        )
        for name in names
    ]
