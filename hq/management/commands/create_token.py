"""Issue a personal access token, creating the user, workspace and membership when missing."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from hq import services
from hq.errors import HQError


class Command(BaseCommand):
    help = (
        "Create a personal access token (and the user, workspace and membership when missing). "
        "The token is the last line of output."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", required=True, help="The user's email; created when missing.")
        parser.add_argument("--workspace", required=True, help="Workspace slug or name; created when missing.")
        parser.add_argument("--admin", action="store_true", help="Make the user an admin of the workspace.")
        parser.add_argument("--scopes", default="", help="Comma-separated scopes; all scopes when omitted.")
        parser.add_argument("--expires-in-days", type=int, default=None, help="Days until the token expires.")
        parser.add_argument("--name", default="", help="What the token is for.")

    def handle(self, *args: Any, **options: Any) -> None:
        scopes = [s.strip() for s in options["scopes"].split(",") if s.strip()]
        days = options["expires_in_days"]
        if days is not None and days < 1:
            raise CommandError("--expires-in-days must be 1 or more.")
        try:
            issued = services.token_provision(
                email=options["email"],
                workspace=options["workspace"],
                admin=options["admin"],
                scopes=scopes,
                expires_in_days=days,
                name=options["name"],
            )
        except HQError as exc:
            raise CommandError(exc.message) from exc
        token = issued.token
        self.stdout.write(
            f"Token {token.prefix}… for {token.user.email} in workspace '{token.workspace.slug}' "
            f"({'admin' if options['admin'] else 'role unchanged'}); scopes: {', '.join(token.scopes)}"
        )
        self.stdout.write(issued.clear)
