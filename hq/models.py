"""Tenancy, users, tokens and agents: the data every other app builds on."""

from __future__ import annotations

import uuid
from typing import ClassVar

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from hq import clock, timefmt


def validate_time_zone(value: str) -> None:
    """A user's time zone: an IANA name zoneinfo knows, or blank."""
    problem = timefmt.time_zone_problem(value)
    if problem:
        raise ValidationError(problem, code="invalid_time_zone")


class UserManager(BaseUserManager["User"]):
    """Users log in by email."""

    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra: object) -> User:
        if not email:
            raise ValueError("An email is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra: object) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self.create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A person or agent identity; logs in by email."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField(unique=True, help_text="Login name; stored lower-case.")
    display_name = models.CharField(max_length=150, blank=True, help_text="Shown in lists and owner filters.")
    is_staff = models.BooleanField(default=False, help_text="May log in to the admin (the ops console).")
    is_active = models.BooleanField(default=True, help_text="Inactive users cannot log in or use tokens.")
    date_joined = models.DateTimeField(default=clock.now)
    time_zone = models.CharField(
        max_length=64,
        blank=True,
        default="",
        validators=[validate_time_zone],
        help_text="Your own IANA zone (Europe/Stockholm): the console shows times in UTC and in it. Empty: UTC only.",
    )

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        ordering = ["email"]

    def __str__(self) -> str:
        return self.display_name or self.email

    @property
    def label(self) -> str:
        return self.display_name or self.email


class Plan(models.Model):
    """Limits that apply to a workspace."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=64, unique=True)
    max_schedules = models.PositiveIntegerField(
        help_text="Non-archived schedules (both surfaces) a workspace may hold."
    )

    def __str__(self) -> str:
        return f"{self.name} ({self.max_schedules} schedules)"


class Workspace(models.Model):
    """A tenant. Nothing crosses workspaces."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=150)
    slug = models.SlugField(max_length=100, unique=True)
    locale = models.CharField(max_length=35, default="en-US", help_text="BCP-47 tag used for deliveries.")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="workspaces")
    created_at = models.DateTimeField(default=clock.now)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class Membership(models.Model):
    """A user's role in a workspace."""

    class Role(models.TextChoices):
        ADMIN = "admin", "Admin"
        MEMBER = "member", "Member"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=clock.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "workspace"], name="uniq_membership")]

    def __str__(self) -> str:
        return f"{self.user} in {self.workspace} ({self.role})"


class PersonalAccessToken(models.Model):
    """An API token. Only a SHA-256 hash and a display prefix are stored; the clear text is shown once."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="tokens")
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="tokens")
    name = models.CharField(max_length=100, blank=True, help_text="What the token is for.")
    prefix = models.CharField(max_length=16, editable=False, help_text="First characters, for recognising it.")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(default=list, help_text="List of scopes this token grants.")
    created_at = models.DateTimeField(default=clock.now)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never expires.")
    revoked_at = models.DateTimeField(null=True, blank=True, help_text="Set to revoke; effective at once.")
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "personal access token"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @property
    def is_active(self) -> bool:
        now = clock.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class Agent(models.Model):
    """An AI agent a workspace can run: an OpenAI-compatible chat API or the built-in offline backend."""

    class Backend(models.TextChoices):
        BUILTIN = "builtin", "Built-in (offline, deterministic)"
        OPENAI_COMPATIBLE = "openai_compatible", "OpenAI-compatible chat API"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="agents")
    name = models.CharField(max_length=100)
    enabled = models.BooleanField(default=True)
    is_default = models.BooleanField(default=False, help_text="The workspace's default agent (one at most).")
    backend = models.CharField(max_length=32, choices=Backend.choices, default=Backend.BUILTIN)
    base_url = models.URLField(blank=True, help_text="OpenAI-compatible API base URL.")
    model = models.CharField(max_length=100, blank=True)
    api_key_env = models.CharField(
        max_length=100, blank=True, help_text="Name of the environment variable holding the API key."
    )
    system_prompt = models.TextField(blank=True)
    created_at = models.DateTimeField(default=clock.now)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["workspace"], condition=Q(is_default=True), name="one_default_agent_per_workspace"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.backend})"


class Room(models.Model):
    """A chat room of a workspace: people post, bots post scheduled messages, agents reply."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="rooms")
    name = models.CharField(max_length=150)
    members = models.ManyToManyField(User, related_name="rooms", blank=True)
    agent = models.ForeignKey(
        Agent,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="rooms",
        help_text="The room's agent for trigger_ai; empty: the workspace default.",
    )
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=clock.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class RoomMessage(models.Model):
    """A message in a room."""

    class Kind(models.TextChoices):
        USER = "user", "User"
        BOT = "bot", "Bot (scheduled post)"
        AGENT = "agent", "Agent"

    class MsgType(models.TextChoices):
        TEXT = "swp.text", "Text"
        MARKDOWN = "swp.markdown", "Markdown"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.USER)
    author = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    msgtype = models.CharField(max_length=32, choices=MsgType.choices, default=MsgType.TEXT)
    body = models.TextField()
    schedule_id = models.UUIDField(null=True, blank=True, help_text="The schedule that posted it, if any.")
    created_at = models.DateTimeField(default=clock.now)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["room", "created_at"], name="roommessage_room_created")]

    def __str__(self) -> str:
        return f"{self.kind}: {self.body[:40]}"


class Note(models.Model):
    """A note that stored queries search."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="notes")
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True, help_text="List of tag strings.")
    created_at = models.DateTimeField(default=clock.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["workspace", "-created_at"], name="note_ws_created")]

    def __str__(self) -> str:
        return self.title


class StoredQuery(models.Model):
    """Saved filters over notes: text, tags, author, date range, limit."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="stored_queries")
    owner = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    name = models.CharField(max_length=150)
    filters = models.JSONField(default=dict, help_text="{text, tags, author_id, created_after, created_before, limit}")
    created_at = models.DateTimeField(default=clock.now)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "stored queries"

    def __str__(self) -> str:
        return self.name


class Conversation(models.Model):
    """An inbox thread of a user: agent schedule runs land here (the web inbox)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="conversations")
    owner = models.ForeignKey(User, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=300)
    schedule_id = models.UUIDField(null=True, blank=True, help_text="The agent schedule whose runs it holds.")
    created_at = models.DateTimeField(default=clock.now)
    updated_at = models.DateTimeField(default=clock.now)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [
            models.Index(fields=["workspace", "owner", "-updated_at"], name="conv_ws_owner_updated"),
            models.Index(fields=["schedule_id", "-created_at"], name="conv_schedule"),
        ]

    def __str__(self) -> str:
        return self.title


class ConversationMessage(models.Model):
    """A prompt, a reply or a note in a conversation."""

    class Role(models.TextChoices):
        USER = "user", "User (prompt)"
        ASSISTANT = "assistant", "Assistant (agent reply)"
        SYSTEM = "system", "System"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16, choices=Role.choices)
    body = models.TextField()
    fire_id = models.UUIDField(null=True, blank=True, help_text="The schedule fire that wrote it.")
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=clock.now)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["conversation", "created_at"], name="convmsg_conv_created")]

    def __str__(self) -> str:
        return f"{self.role}: {self.body[:40]}"
