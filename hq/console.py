"""Pieces the ops console's lists share: short ids with copy, state badges, JSON previews, and a
paginator that never counts a whole table.

A list of a million jobs must render as fast as one of fifty: Django's changelist counts the rows
of every page it shows (`paginator.count`), a full scan on a large table. `CappedPaginator` counts
at most CAP + 1 rows (`SELECT COUNT(*) FROM (... LIMIT CAP + 1)`), so the pages reach CAP rows
and the page says "more than CAP" beyond; filters narrow a longer list.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any
from uuid import UUID

from django.core.paginator import Page, Paginator
from django.utils.html import format_html
from django.utils.text import Truncator

#: The most rows a console list counts; it pages through this many at most.
CAP = 10_000
#: Characters of an argument preview in a list.
PREVIEW_CHARS = 60
#: Characters of a preview's hover text.
PREVIEW_TITLE_CHARS = 600
#: Rows per page of the console's lists.
PER_PAGE = 50


class CappedPaginator(Paginator):  # type: ignore[type-arg]  # django-stubs' Paginator is generic in the stubs only
    """Counts at most CAP + 1 rows; `capped` says whether there are more than CAP.

    On the first page (`first_page`, told by the admin's `get_paginator`) it reads that page's rows,
    and one more, before counting: they are the page, and when there is no next row they are all
    the rows, so a search or filter that finds less than a page (the usual case) is answered by one
    scan, not a count and then the page.
    """

    cap = CAP

    def __init__(self, *args: Any, first_page: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.first_page = first_page
        self._first_rows: list[Any] | None = None

    @cached_property
    def count(self) -> int:
        object_list: Any = self.object_list
        if not hasattr(object_list, "query"):
            return min(len(object_list), CAP + 1)
        if self.first_page:
            self._first_rows = list(object_list[: self.per_page + 1])
            if len(self._first_rows) <= self.per_page:
                return len(self._first_rows)
        # Any CAP + 1 matching ids: no ordering to satisfy (a sort of every match) and no
        # computed columns (the list's JSON texts) for rows nobody sees.
        return min(int(object_list.order_by().values("pk")[: CAP + 1].count()), CAP + 1)

    def page(self, number: Any) -> Any:
        number = self.validate_number(number)  # counts, so the first page's rows are read by now
        if number == 1 and self._first_rows is not None:
            return Page(self._first_rows[: self.per_page], number, self)
        return super().page(number)

    @property
    def capped(self) -> bool:
        return self.count > CAP


class ConsoleMedia:
    """The console's stylesheet (badges, dense rows) and its one script (copy buttons)."""

    css = {"all": ["hq/console.css"]}
    js = ["hq/console.js"]


def short_id(value: UUID | str, url: str | None = None) -> str:
    """The first 8 characters, linked when `url` is given, the full id on hover and a copy button
    (the id stays in the link and the hover text without JavaScript)."""
    full = str(value)
    code = format_html('<code title="{}">{}</code>', full, full[:8])
    shown = format_html('<a href="{}" title="{}">{}</a>', url, full, code) if url else code
    button = format_html('<button type="button" class="hq-copy" data-copy="{}" title="Copy">copy</button>', full)
    return format_html('<span class="hq-id">{}{}</span>', shown, button)


def badge(state: str, label: str | None = None) -> str:
    """A coloured state badge (hq/console.css has one colour per state of jobs, requests and schedules)."""
    return format_html('<span class="hq-badge hq-state-{}">{}</span>', state, label or state.replace("_", " "))


def preview(text: str | None, chars: int = PREVIEW_CHARS) -> str:
    """One line of a stored JSON text (or any text), cut to `chars`, the longer text on hover."""
    if not text:
        return "—"
    line = " ".join(text.split())
    return format_html(
        '<span class="hq-preview" title="{}">{}</span>',
        Truncator(line).chars(PREVIEW_TITLE_CHARS),
        Truncator(line).chars(chars),
    )
