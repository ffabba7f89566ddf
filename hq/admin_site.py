"""The admin site: Django's, with failed sign-ins throttled by the one failure counter, and an
index ordered by what ops use.

The index (and the sidebar) starts with an "Ops console" section: Dashboard, HITL requests, Jobs,
Schedules, Workers, Queue pauses and Key limits, each the page ops open most, then the other apps (HQ's
tenancy, Delivery, Authentication). There is no "View site": HQ has no public site besides the API.

Each failed admin login counts against the client's address and against the username typed
(hq.auth_failures, shared with API tokens and /metrics). While either has reached
`HQ_AUTH_FAILURE_RATE` failures in the window, the login form refuses every attempt, the right
password included, without checking it: the page answers 429 with `Retry-After` and says why.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path, reverse

from hq import auth_failures, clock, services, timefmt
from hq.admin_scoping import admin_user
from hq.errors import HQError


class ThrottledLoginForm(AdminAuthenticationForm):
    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "throttled": (
            "Too many failed sign-ins from this address or for this account. "
            "Sign-in is paused; try again in %(wait)s seconds."
        ),
    }

    #: Seconds until sign-in may be tried again, when this attempt was refused for that.
    throttled_for: int | None = None

    def clean(self) -> dict[str, Any]:
        # The admin's login view always passes its request (the stub allows a form without one).
        assert self.request is not None
        keys = [auth_failures.address_of(self.request)]
        name = self.cleaned_data.get("username")
        if name:
            keys.append(auth_failures.username(name))
        wait = auth_failures.exceeded(*keys)
        if wait is not None:
            self.throttled_for = wait
            raise ValidationError(self.error_messages["throttled"], code="throttled", params={"wait": wait})
        try:
            return super().clean()
        except ValidationError:  # a wrong password, an inactive or a non-staff account
            auth_failures.record(*keys)
            raise


class TimeZoneForm(forms.Form):
    time_zone = forms.CharField(
        required=False,
        max_length=64,
        label="My time zone",
        widget=forms.TextInput(attrs={"list": "hq-zones", "size": 32, "autocomplete": "off"}),
        help_text="An IANA zone such as Europe/Stockholm or America/New_York. Empty: times in UTC only.",
    )


#: The "Ops console" section, in order: (app label, model) of a registered admin, or the URL name
#: and label of one of the console's own pages.
CONSOLE: tuple[tuple[str, str], ...] = (
    ("page", "ops-dashboard:Dashboard"),
    ("queueapp", "HITLRequest"),
    ("queueapp", "Job"),
    ("schedules", "Schedule"),
    ("page", "ops-workers:Workers"),
    ("queueapp", "QueuePause"),
    ("queueapp", "KeyLimit"),
)
#: The other apps, in this order (any app not named comes last).
APP_ORDER = ("hq", "schedules", "queueapp", "delivery", "auth")


class HQAdminSite(admin.AdminSite):
    site_header = "HQ ops console"
    site_title = "HQ"
    index_title = "Jobs, approvals and schedules"
    site_url = None  # no "View site" link: there is no site besides the API (/v1/docs)
    # The console's lists are wide (ids, states, previews, times): they get the whole width, and the
    # index and breadcrumbs lead between pages.
    enable_nav_sidebar = False
    login_form = ThrottledLoginForm

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[dict[str, Any]]:
        apps = super().get_app_list(request, app_label)
        if app_label is not None:
            return apps
        models = {(app["app_label"], m["object_name"]): m for app in apps for m in app["models"]}
        console: list[dict[str, Any]] = []
        for app, name in CONSOLE:
            if app == "page":
                url_name, label = name.split(":")
                console.append({"name": label, "object_name": label, "admin_url": reverse(url_name), "view_only": True})
            elif (app, name) in models:
                console.append(models[(app, name)])
        moved = {id(m) for m in console}
        rest = []
        for app_dict in apps:
            app_dict["models"] = [m for m in app_dict["models"] if id(m) not in moved]
            if app_dict["models"]:
                rest.append(app_dict)
        rest.sort(key=lambda a: APP_ORDER.index(a["app_label"]) if a["app_label"] in APP_ORDER else len(APP_ORDER))
        section = {
            "name": "Ops console",
            "app_label": "console",
            "app_url": reverse("ops-dashboard"),
            "has_module_perms": True,
            "models": console,
        }
        return [section, *rest]

    def get_urls(self) -> list[URLResolver | URLPattern]:
        return [path("my-time-zone/", self.admin_view(self.time_zone_view), name="time_zone"), *super().get_urls()]

    def time_zone_view(self, request: HttpRequest) -> HttpResponse:
        """The signed-in user's own time zone (nobody else's: there is no user in the URL), saved
        through `user_set_time_zone`; a bad name is a form error and nothing is saved."""
        user = admin_user(request)
        if user is None:  # admin_view lets only signed-in staff through
            raise PermissionDenied
        form = TimeZoneForm(request.POST or None, initial={"time_zone": user.time_zone})
        if request.method == "POST" and form.is_valid():
            try:
                services.user_set_time_zone(user=user, time_zone=form.cleaned_data["time_zone"])
            except HQError as exc:
                for problem in exc.fields.get("time_zone", [exc.message]):
                    form.add_error("time_zone", problem)
            else:
                shown = user.time_zone or "none (UTC only)"
                messages.success(request, f"Your time zone is now {shown}.")
                return HttpResponseRedirect(reverse("admin:time_zone", current_app=self.name))
        user.refresh_from_db(fields=["time_zone"])  # a refused name was never saved: show the stored one
        context = {
            **self.each_context(request),
            "title": "My time zone",
            "form": form,
            "zones": sorted(timefmt.zone_names()),
            "now_shown": timefmt.exact(clock.now()),
        }
        request.current_app = self.name
        return TemplateResponse(request, "admin/hq/time_zone.html", context)

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        response = super().login(request, extra_context)
        form = (getattr(response, "context_data", None) or {}).get("form")
        wait = getattr(form, "throttled_for", None)
        if wait is not None:
            response.status_code = 429
            response["Retry-After"] = str(wait)
        return response
