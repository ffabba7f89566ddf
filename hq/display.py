"""Stored JSON shown in the admin, at any depth.

The API refuses bodies nested deeper than MAX_JSON_DEPTH, but rows written before that rule (JSON
900 levels deep once got in through `Content-Type: */*`) or by hand may hold deeper values. Python
recurses once per level both to load such a value (`json.loads`, in the model field) and to dump
it (`json.dumps`), and an admin page is already deep in the stack when it renders: the job's and
its HITL request's pages answered 500. So the admin reads client-supplied JSON columns as the text
PostgreSQL stores (`with_json_text`) and renders it with `stored_json`, which never recurses
deeper than MAX_JSON_DEPTH.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from django.db.models import Model, QuerySet, TextField
from django.db.models.functions import Cast

from hq.jsonguard import JSON_STRING, MAX_JSON_DEPTH, json_depth

CLIPPED = f"… nested deeper than {MAX_JSON_DEPTH} levels, not shown …"
#: How much of a text that does not parse the admin shows (never the case for jsonb columns).
RAW_SHOWN_CHARS = 2000
# A JSON string or a bracket.
_TOKEN = re.compile(JSON_STRING + r"|[\[\]{}]")
_M = TypeVar("_M", bound=Model)


def clip_json(value: Any, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """`value` with every array or object below `max_depth` levels replaced by the CLIPPED marker.

    Recurses at most `max_depth` levels, whatever the depth of `value`.
    """

    def clip(item: Any, depth: int) -> Any:
        if not isinstance(item, dict | list):
            return item
        if depth > max_depth:
            return CLIPPED
        if isinstance(item, dict):
            return {key: clip(child, depth + 1) for key, child in item.items()}
        return [clip(child, depth + 1) for child in item]

    return clip(value, 1)


def pretty_json(value: Any, *, sort_keys: bool = True) -> str:
    """Indented JSON (keys sorted unless told otherwise), clipped at MAX_JSON_DEPTH levels."""
    return json.dumps(clip_json(value), indent=2, sort_keys=sort_keys, ensure_ascii=False, default=str)


def _clip_text(text: str) -> str:
    """JSON text with each array or object deeper than MAX_JSON_DEPTH replaced by the CLIPPED
    marker, without parsing it: one linear pass over its strings and brackets."""
    parts: list[str] = []
    depth, keep_from = 0, 0
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth == MAX_JSON_DEPTH + 1:
                parts += [text[keep_from : match.start()], json.dumps(CLIPPED, ensure_ascii=False)]
        elif token in ("]", "}"):
            if depth == MAX_JSON_DEPTH + 1:
                keep_from = match.end()
            depth -= 1
    parts.append(text[keep_from:])
    return "".join(parts)


def stored_value(text: str) -> Any:
    """The value of a column's stored JSON text, clipped at MAX_JSON_DEPTH levels as `clip_json` clips.

    Text nested deeper is clipped before it is parsed, so nothing recurses past MAX_JSON_DEPTH.
    ValueError for text that is not JSON (never the case for a jsonb column).
    """
    if json_depth(text) > MAX_JSON_DEPTH:
        text = _clip_text(text)
    if json_depth(text) > MAX_JSON_DEPTH:  # unbalanced: not JSON PostgreSQL would have stored
        raise ValueError("Unbalanced brackets: not JSON.")
    return json.loads(text)


def stored_json(text: str) -> str:
    """Indented JSON from a column's stored text, clipped at MAX_JSON_DEPTH levels as `pretty_json` is."""
    try:
        return pretty_json(stored_value(text))
    except ValueError:
        return text[:RAW_SHOWN_CHARS]


def clipped_note(text: str) -> str:
    """What to say above a stored value that `stored_json` clips; "" when nothing is left out."""
    depth = json_depth(text)
    if depth <= MAX_JSON_DEPTH:
        return ""
    return (
        f"Nested {depth:,} levels deep, more than the {MAX_JSON_DEPTH} the API accepts: "
        f"levels below {MAX_JSON_DEPTH} are not shown."
    )


def json_text_attr(field: str) -> str:
    """The attribute `with_json_text` puts a field's stored text under."""
    return f"{field}_stored_text"


def with_json_text(rows: QuerySet[_M], *fields: str) -> QuerySet[_M]:
    """`rows` with the JSON `fields` left unloaded and their stored text annotated instead.

    Read the text with `json_text_attr(field)`; touching the field itself would load it (and
    recurse as deep as the value goes).
    """
    annotated: QuerySet[_M] = rows.defer(*fields).annotate(
        **{json_text_attr(f): Cast(f, output_field=TextField()) for f in fields}
    )
    return annotated
