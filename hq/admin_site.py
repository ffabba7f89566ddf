"""The admin site: Django's, with failed sign-ins throttled by the one failure counter.

Each failed admin login counts against the client's address and against the username typed
(hq.auth_failures, shared with API tokens and /metrics). While either has reached
`HQ_AUTH_FAILURE_RATE` failures in the window, the login form refuses every attempt, the right
password included, without checking it: the page answers 429 with `Retry-After` and says why.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse

from hq import auth_failures


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


class HQAdminSite(admin.AdminSite):
    site_header = "HQ ops console"
    site_title = "HQ"
    index_title = "Jobs, approvals and schedules"
    login_form = ThrottledLoginForm

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        response = super().login(request, extra_context)
        form = (getattr(response, "context_data", None) or {}).get("form")
        wait = getattr(form, "throttled_for", None)
        if wait is not None:
            response.status_code = 429
            response["Retry-After"] = str(wait)
        return response
