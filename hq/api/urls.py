"""HQ's own API routes: who am I, rooms and notes."""

from __future__ import annotations

from django.urls import path

from hq.api import messaging
from hq.api.views import MeView

urlpatterns = [
    path("me", MeView.as_view(), name="me"),
    path("rooms", messaging.RoomsView.as_view(), name="rooms"),
    path("rooms/<uuid:room_id>", messaging.RoomView.as_view(), name="room"),
    path("rooms/<uuid:room_id>/messages", messaging.RoomMessagesView.as_view(), name="room-messages"),
    path("api/conversations", messaging.ConversationsView.as_view(), name="conversations"),
    path("api/conversations/<uuid:conversation_id>", messaging.ConversationView.as_view(), name="conversation"),
    path("notes", messaging.NotesView.as_view(), name="notes"),
    path("notes/queries", messaging.StoredQueriesView.as_view(), name="stored-queries"),
    path(
        "notes/queries/<uuid:query_id>/results", messaging.StoredQueryResultsView.as_view(), name="stored-query-results"
    ),
]
