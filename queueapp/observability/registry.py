"""What other apps add to the ops views, and the scope each addition is computed for.

`queueapp` knows nothing of schedules: an app adds a section to the observability summary or
panels to the dashboard by registering a function of a `Scope` from its `AppConfig.ready()`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.db.models import Model, QuerySet

from hq import clock

RowT = TypeVar("RowT", bound=Model)


@dataclass(frozen=True)
class Scope:
    """Whose rows a view covers: some workspaces, or every one (None, superusers in the admin)."""

    workspace_ids: tuple[Any, ...] | None
    now: datetime

    @classmethod
    def of(cls, workspace_ids: Iterable[Any] | None, now: datetime | None = None) -> Scope:
        return cls(None if workspace_ids is None else tuple(workspace_ids), now or clock.now())

    def filter(self, rows: QuerySet[RowT], field: str = "workspace_id") -> QuerySet[RowT]:
        return rows if self.workspace_ids is None else rows.filter(**{f"{field}__in": self.workspace_ids})

    def since(self, seconds: float) -> datetime:
        return self.now - timedelta(seconds=seconds)


@dataclass
class Panel:
    """One chart on the ops dashboard: an inline SVG and a caption."""

    title: str
    svg: str
    caption: str = ""


SummarySection = Callable[[Scope], dict[str, Any]]
PanelSource = Callable[[Scope], list[Panel]]

_sections: dict[str, SummarySection] = {}
_panels: dict[str, tuple[int, PanelSource]] = {}


def register_summary_section(name: str, section: SummarySection) -> None:
    """Show `section(scope)` under `name` in the observability summary."""
    _sections[name] = section


def register_dashboard_panels(name: str, source: PanelSource, *, order: int = 100) -> None:
    """Add `source(scope)`'s panels to the ops dashboard; a lower `order` comes first."""
    _panels[name] = (order, source)


def sections() -> dict[str, SummarySection]:
    """The registered summary sections by name, in name order."""
    return dict(sorted(_sections.items()))


def panels() -> list[PanelSource]:
    """The registered panel sources in dashboard order."""
    return [source for _, source in sorted(_panels.values(), key=lambda p: p[0])]
