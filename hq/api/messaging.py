"""/v1/rooms, /v1/notes and /v1/api/conversations: set up and see what scheduled tasks act on.

Views parse the request, call the selectors (`hq.messaging_selectors`) and services
(`hq.messaging`) and render the result: no query is written here.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from typing import Any, ClassVar, Generic, TypeVar

from django.db.models import Model, QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hq import messaging
from hq import messaging_selectors as selectors
from hq.api.fields import UTCDateTimeField
from hq.api.pagination import paginate, parse_page
from hq.api.permissions import principal_of
from hq.api.schema import PAGE_PARAMETERS
from hq.errors import ValidationFailed
from hq.models import Conversation, ConversationMessage, Note, Room, RoomMessage, StoredQuery
from hq.selectors import agent_get

RowT = TypeVar("RowT", bound=Model)


# An output serializer of rows that are also listed: `results_key` is the list's key in paginated
# responses (and in the schema). No docstring: drf-spectacular would show it as the description of
# every subclass without one of its own.
class ListedOut(serializers.ModelSerializer[RowT]):
    results_key: ClassVar[str]


class RoomOut(ListedOut[Room]):
    results_key = "rooms"

    id = serializers.UUIDField()
    agent_id = serializers.UUIDField(allow_null=True)
    member_ids = serializers.SerializerMethodField()
    created_at = UTCDateTimeField()

    class Meta:
        model = Room
        fields = ["id", "name", "agent_id", "member_ids", "created_at"]

    def get_member_ids(self, room: Room) -> list[str]:
        return sorted(str(m.pk) for m in room.members.all())


class RoomIn(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=150)
    members = serializers.ListField(child=serializers.UUIDField(), required=False, default=list, max_length=500)
    agent_id = serializers.UUIDField(required=False, allow_null=True, default=None)


class MessageOut(ListedOut[RoomMessage]):
    results_key = "messages"

    id = serializers.UUIDField()
    author_id = serializers.UUIDField(allow_null=True)
    agent_id = serializers.UUIDField(allow_null=True)
    schedule_id = serializers.UUIDField(allow_null=True)
    created_at = UTCDateTimeField()

    class Meta:
        model = RoomMessage
        fields = ["id", "kind", "author_id", "agent_id", "msgtype", "body", "schedule_id", "created_at"]


class MessageIn(serializers.Serializer[Any]):
    msgtype = serializers.ChoiceField(choices=RoomMessage.MsgType.values, default=RoomMessage.MsgType.TEXT)
    body = serializers.CharField(max_length=20000)


# GET: one page of `rows()`; POST: `input_serializer` validates, `create()` writes, 201 with the
# object. Each subclass names its serializers (the output's `results_key` is the list's key), which
# also document both methods. No docstring: drf-spectacular would show it as the description of
# every subclass without one of its own.
class ListCreateView(APIView, Generic[RowT], metaclass=ABCMeta):
    input_serializer: type[serializers.Serializer[Any]]
    output_serializer: type[ListedOut[RowT]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        out = cls.output_serializer
        extend_schema_view(
            get=extend_schema(responses={200: out(many=True)}),
            post=extend_schema(request=cls.input_serializer, responses={201: out}),
        )(cls)

    @abstractmethod
    def rows(self, request: Request) -> QuerySet[RowT]:
        """The rows the caller may list, in the API's order."""

    @abstractmethod
    def create(self, request: Request, data: dict[str, Any]) -> RowT:
        """Write one object from the validated body."""

    def get(self, request: Request) -> Response:
        out = self.output_serializer
        return paginate(self, request, self.rows(request), out, out.results_key)

    def post(self, request: Request) -> Response:
        data = self.input_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        created = self.create(request, data.validated_data)
        return Response(self.output_serializer(created).data, status=status.HTTP_201_CREATED)


def _room(request: Request, room_id: str) -> Room:
    caller = principal_of(request)
    return selectors.room_for_member(workspace_id=caller.workspace_id, user_id=caller.user.pk, room_id=room_id)


class RoomsView(ListCreateView[Room]):
    """Rooms the caller belongs to; create one."""

    required_scopes = {"GET": "rooms:read", "POST": "rooms:write"}
    input_serializer, output_serializer = RoomIn, RoomOut

    def rows(self, request: Request) -> QuerySet[Room]:
        caller = principal_of(request)
        return selectors.room_list(workspace_id=caller.workspace_id, user_id=caller.user.pk)

    def create(self, request: Request, data: dict[str, Any]) -> Room:
        caller = principal_of(request)
        agent_id = data["agent_id"]
        agent = agent_get(workspace_id=caller.workspace_id, agent_id=agent_id) if agent_id else None
        return messaging.room_create(
            workspace=caller.workspace,
            creator=caller.user,
            name=data["name"],
            member_ids=data["members"],
            agent=agent,
        )


class RoomView(APIView):
    required_scopes = "rooms:read"

    @extend_schema(responses={200: RoomOut})
    def get(self, request: Request, room_id: str) -> Response:
        return Response(RoomOut(_room(request, room_id)).data)


class RoomMessagesView(APIView):
    """A room's messages, oldest first; post one."""

    required_scopes = {"GET": "rooms:read", "POST": "rooms:write"}

    @extend_schema(responses={200: MessageOut(many=True)})
    def get(self, request: Request, room_id: str) -> Response:
        messages = selectors.room_message_list(room=_room(request, room_id))
        return paginate(self, request, messages, MessageOut, "messages")

    @extend_schema(request=MessageIn, responses={201: MessageOut})
    def post(self, request: Request, room_id: str) -> Response:
        room = _room(request, room_id)
        data = MessageIn(data=request.data)
        data.is_valid(raise_exception=True)
        msg = messaging.message_post(room=room, author=principal_of(request).user, **data.validated_data)
        return Response(MessageOut(msg).data, status=status.HTTP_201_CREATED)


class NoteOut(ListedOut[Note]):
    results_key = "notes"

    id = serializers.UUIDField()
    author_id = serializers.UUIDField(allow_null=True)
    created_at = UTCDateTimeField()

    class Meta:
        model = Note
        fields = ["id", "title", "body", "tags", "author_id", "created_at"]


class NoteIn(serializers.Serializer[Any]):
    title = serializers.CharField(max_length=200)
    body = serializers.CharField(max_length=100_000, required=False, allow_blank=True, default="")
    tags = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, default=list, max_length=50
    )


class QueryFilters(serializers.Serializer[Any]):
    text = serializers.CharField(max_length=200, required=False, allow_blank=True)
    tags = serializers.ListField(child=serializers.CharField(max_length=64), required=False, max_length=50)
    author_id = serializers.UUIDField(required=False, allow_null=True)
    created_after = UTCDateTimeField(required=False, allow_null=True)
    created_before = UTCDateTimeField(required=False, allow_null=True)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=selectors.MAX_QUERY_LIMIT)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        unknown = set(data) - set(self.fields) if isinstance(data, dict) else set()
        if unknown:
            raise serializers.ValidationError({k: ["Unknown filter."] for k in sorted(unknown)})
        value: dict[str, Any] = super().to_internal_value(data)
        for key in ("created_after", "created_before", "author_id"):
            if value.get(key) is not None:
                value[key] = value[key].isoformat() if key != "author_id" else str(value[key])
        return value


class StoredQueryOut(ListedOut[StoredQuery]):
    results_key = "queries"

    id = serializers.UUIDField()
    owner_id = serializers.UUIDField(allow_null=True)
    created_at = UTCDateTimeField()

    class Meta:
        model = StoredQuery
        fields = ["id", "name", "filters", "owner_id", "created_at"]


class StoredQueryIn(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=150)
    filters = QueryFilters(required=False, default=dict)


class NotesView(ListCreateView[Note]):
    required_scopes = {"GET": "notes:read", "POST": "notes:write"}
    input_serializer, output_serializer = NoteIn, NoteOut

    def rows(self, request: Request) -> QuerySet[Note]:
        return selectors.note_list(workspace_id=principal_of(request).workspace_id)

    def create(self, request: Request, data: dict[str, Any]) -> Note:
        caller = principal_of(request)
        return messaging.note_create(workspace=caller.workspace, author=caller.user, **data)


class StoredQueriesView(ListCreateView[StoredQuery]):
    required_scopes = {"GET": "notes:read", "POST": "notes:write"}
    input_serializer, output_serializer = StoredQueryIn, StoredQueryOut

    def rows(self, request: Request) -> QuerySet[StoredQuery]:
        return selectors.stored_query_list(workspace_id=principal_of(request).workspace_id)

    def create(self, request: Request, data: dict[str, Any]) -> StoredQuery:
        caller = principal_of(request)
        return messaging.stored_query_create(workspace=caller.workspace, owner=caller.user, **data)


class StoredQueryResultsView(APIView):
    """Run a stored query now and return the matching notes."""

    required_scopes = "notes:read"

    @extend_schema(
        responses={
            200: inline_serializer(
                "StoredQueryResults", {"notes": NoteOut(many=True), "total": serializers.IntegerField(min_value=0)}
            )
        }
    )
    def get(self, request: Request, query_id: str) -> Response:
        query = selectors.stored_query_get(workspace_id=principal_of(request).workspace_id, query_id=query_id)
        notes = selectors.notes_matching(workspace_id=query.workspace_id, filters=query.filters)
        return Response({"notes": NoteOut(notes, many=True).data, "total": len(notes)})


class ConversationOut(ListedOut[Conversation]):
    results_key = "conversations"

    id = serializers.UUIDField()
    schedule_id = serializers.UUIDField(allow_null=True)
    created_at = UTCDateTimeField()
    updated_at = UTCDateTimeField()

    class Meta:
        model = Conversation
        fields = ["id", "title", "schedule_id", "created_at", "updated_at"]


class ConversationMessageOut(serializers.ModelSerializer[ConversationMessage]):
    id = serializers.UUIDField()
    fire_id = serializers.UUIDField(allow_null=True)
    agent_id = serializers.UUIDField(allow_null=True)
    created_at = UTCDateTimeField()

    class Meta:
        model = ConversationMessage
        fields = ["id", "role", "body", "fire_id", "agent_id", "created_at"]


class ConversationDetailOut(ConversationOut):
    """The schema of GET /v1/api/conversations/{id}: the conversation and one page of its messages."""

    messages = ConversationMessageOut(many=True)
    total = serializers.IntegerField(min_value=0)
    limit = serializers.IntegerField()
    offset = serializers.IntegerField()

    class Meta(ConversationOut.Meta):
        fields = [*ConversationOut.Meta.fields, "messages", "total", "limit", "offset"]


class ConversationsView(APIView):
    """The caller's inbox: conversations, most recently active first."""

    required_scopes = "conversations:read"

    @extend_schema(
        parameters=[OpenApiParameter("schedule_id", {"type": "string", "format": "uuid"}, required=False)],
        responses={200: ConversationOut(many=True)},
    )
    def get(self, request: Request) -> Response:
        caller = principal_of(request)
        schedule_id = None
        if request.query_params.get("schedule_id"):
            try:
                schedule_id = serializers.UUIDField().to_internal_value(request.query_params["schedule_id"])
            except serializers.ValidationError as exc:
                raise ValidationFailed("schedule_id is not a UUID.", fields={"schedule_id": ["Not a UUID."]}) from exc
        rows = selectors.conversation_list(
            workspace_id=caller.workspace_id, owner_id=caller.user.pk, schedule_id=schedule_id
        )
        return paginate(self, request, rows, ConversationOut, "conversations")


class ConversationView(APIView):
    """One conversation with its messages (oldest first, paginated)."""

    required_scopes = "conversations:read"

    @extend_schema(parameters=PAGE_PARAMETERS, responses={200: ConversationDetailOut})
    def get(self, request: Request, conversation_id: str) -> Response:
        caller = principal_of(request)
        conversation = selectors.conversation_get(
            workspace_id=caller.workspace_id, owner_id=caller.user.pk, conversation_id=conversation_id
        )
        limit, offset = parse_page(request.query_params)
        messages = selectors.conversation_message_list(conversation=conversation)
        body = ConversationOut(conversation).data
        body.update(
            {
                "messages": ConversationMessageOut(messages[offset : offset + limit], many=True).data,
                "total": messages.count(),
                "limit": limit,
                "offset": offset,
            }
        )
        return Response(body)
