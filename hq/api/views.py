"""HQ's own API views."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hq.api.auth import Principal


class MeView(APIView):
    """Who the token belongs to: user, workspace, role and scopes."""

    required_scopes = None

    @extend_schema(
        operation_id="me",
        responses=inline_serializer(
            "Me",
            {
                "user_id": serializers.UUIDField(),
                "email": serializers.EmailField(),
                "display_name": serializers.CharField(),
                "workspace_id": serializers.UUIDField(),
                "workspace": serializers.CharField(),
                "role": serializers.CharField(),
                "scopes": serializers.ListField(child=serializers.CharField()),
            },
        ),
    )
    def get(self, request: Request) -> Response:
        p = request.auth
        assert isinstance(p, Principal)  # TokenAuthentication answers 401 before the view otherwise
        return Response(
            {
                "user_id": str(p.user.id),
                "email": p.user.email,
                "display_name": p.user.display_name,
                "workspace_id": str(p.workspace.id),
                "workspace": p.workspace.slug,
                "role": p.role,
                "scopes": list(p.token.scopes),
            }
        )
