"""The input guard: the checks every JSON body passes before anything acts on it.

The API's parser (hq.api.parsers) and the admin's JSON form fields (hq.admin) both parse through
`load_json`, so one set of rules covers every parsed body.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from hq.errors import ValidationFailed

# Deeper JSON is refused before a parser, a serializer or PostgreSQL recurses into it: no payload
# the API takes needs more than a handful of levels, and this stays far below Python's recursion limit.
MAX_JSON_DEPTH = 64
# PostgreSQL refuses NUL in text and jsonb; lone surrogates cannot be encoded as UTF-8.
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
# The escapes that spell them in JSON text (a few false alarms, such as an escaped backslash
# before "u0000", only cost the walk below).
_UNSTORABLE_ESCAPE = re.compile(r"\\u(?:0000|d[89a-f][0-9a-f]{2})", re.IGNORECASE)
# A JSON string, escapes included; an unterminated one runs to the end. The closing quote is
# optional, so the first attempt always succeeds and the scan never backtracks: linear time.
JSON_STRING = r'"[^"\\]*(?:\\[\s\S]?[^"\\]*)*"?'
_STRING = re.compile(JSON_STRING)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in `text`, found without parsing or recursion.

    Strings are cut out first, so brackets inside them do not count. Linear in the length of the
    text; for invalid JSON the figure may be off, but the parser refuses such text anyway.
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def _strict_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def load_json(raw: bytes | str, *, strict: bool = True, subject: str = "The body") -> Any:
    """Parse JSON text, or raise ValidationFailed (400): the input guard every parsed body passes.

    Refused as `malformed_json`: invalid UTF-8 and nesting deeper than MAX_JSON_DEPTH (both found
    before `json.loads` could recurse), syntax errors and, when `strict`, NaN and Infinity. Refused
    as `invalid`: strings (keys included) holding NUL or lone surrogates, which PostgreSQL cannot
    store. `subject` names the input in the messages.
    """
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValidationFailed(f"{subject} is not valid UTF-8 (byte {exc.start}).", code="malformed_json") from exc
    too_deep = ValidationFailed(
        f"{subject} is nested too deeply (at most {MAX_JSON_DEPTH} levels of arrays and objects).",
        code="malformed_json",
    )
    if json_depth(raw) > MAX_JSON_DEPTH:
        raise too_deep
    try:
        value = json.loads(raw, parse_constant=_strict_constant if strict else None)
    except RecursionError as exc:  # not reachable below MAX_JSON_DEPTH; kept so it can never be a 500
        raise too_deep from exc
    except ValueError as exc:
        raise ValidationFailed(f"{subject} is not valid JSON: {exc}", code="malformed_json") from exc
    # A parsed string holds NUL or a lone surrogate only when the text does, raw or escaped
    # (json.loads refuses raw control characters in strings): otherwise no value needs a look.
    if _UNSTORABLE.search(raw) is not None or _UNSTORABLE_ESCAPE.search(raw) is not None:
        _check_strings(value, too_deep)
    return value


def _check_strings(value: Any, too_deep: ValidationFailed) -> None:
    """Refuse `value` when any string in it (keys included) holds NUL or a lone surrogate."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _UNSTORABLE.search(item):
                raise ValidationFailed("Strings may not contain NUL (\\u0000) or unpaired surrogate characters.")
        elif isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:  # the scan above already refused this; an exact second count
                raise too_deep
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
