"""Scope checks for DRF views: a view names the scope each action or method needs; hq.permissions decides."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rest_framework.permissions import BasePermission

if TYPE_CHECKING:
    from rest_framework.request import Request

from hq.errors import Unauthenticated
from hq.permissions import Principal, ensure_scope, require_admin

__all__ = ["HasScopes", "principal_of", "require_admin", "required_scope"]


def principal_of(request: Request) -> Principal:
    """The caller `TokenAuthentication` found for this request; 401 when there is none.

    `HasScopes` has already answered 401 for a request without one before any view runs, so in a
    view this only tells the type checker what `request.auth` holds.
    """
    principal = request.auth
    if not isinstance(principal, Principal):
        raise Unauthenticated()
    return principal


def required_scope(view: Any, method: str) -> str | None:
    """Return the scope the view needs for this request.

    `required_scopes` maps an action name (viewsets) or an HTTP method to a scope; a plain string
    applies to every method.
    """
    spec: str | Mapping[str, str] | None = getattr(view, "required_scopes", None)
    if spec is None or isinstance(spec, str):
        return spec
    action: str | None = getattr(view, "action", None)
    if action and action in spec:
        return spec[action]
    return spec.get(method.upper())


class HasScopes(BasePermission):
    """401 without a token, then 403 naming the missing scope (before any object lookup)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        # DRF's Request always has the method of the underlying HttpRequest; the stub allows None.
        ensure_scope(principal_of(request), required_scope(view, request.method or ""))
        return True
