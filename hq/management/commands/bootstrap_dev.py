"""Create the development admin user and a ready API token (used by `make run`)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from hq import services
from hq.models import Membership, User


class Command(BaseCommand):
    help = "Create (or reuse) the dev superuser and workspace, print the login and a fresh API token."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", default="admin@hq.local", help="Login of the dev superuser.")
        parser.add_argument("--workspace", default="dev", help="Workspace slug for the dev user.")

    def handle(self, *args: Any, **options: Any) -> None:
        secret_file = Path(settings.BASE_DIR) / ".run" / "dev-admin-password"
        secret_file.parent.mkdir(parents=True, exist_ok=True)
        if not secret_file.exists():
            secret_file.write_text(secrets.token_urlsafe(12))
            secret_file.chmod(0o600)
        password = secret_file.read_text().strip()
        user = User.objects.filter(email=options["email"]).first()
        if user is None:
            user = User.objects.create_superuser(options["email"], password, display_name="Dev admin")
        else:
            user.is_staff = user.is_superuser = True
            user.set_password(password)
            user.save()
        workspace, _ = services.workspace_get_or_create(slug_or_name=options["workspace"])
        services.membership_set(user=user, workspace=workspace, role=Membership.Role.ADMIN)
        issued = services.token_create(user=user, workspace=workspace, name="make run")
        self.stdout.write(f"Admin login: {user.email} / {password}")
        self.stdout.write(f"API token (workspace '{workspace.slug}', every scope): {issued.clear}")
