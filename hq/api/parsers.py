"""The API's one body parser: JSON, checked by the input guard (hq.jsonguard) on exactly what it parses.

DRF hands a body to a parser when the parser's media type matches the request's Content-Type, and
`application/json` matches `application/*`, `*/*` and `*/json` too (with any parameters). The guard
lives inside the parser, so whatever content type the parser accepts is guarded: there is no
second list of "JSON types" to keep in step. Anything no parser accepts is refused with 415.
"""

from __future__ import annotations

import codecs
from collections.abc import Mapping
from typing import IO, Any

from rest_framework import parsers

from hq.errors import HQError
from hq.jsonguard import load_json


class UnsupportedCharset(HQError):
    """A JSON body declared in a charset other than UTF-8."""

    status_code = 415
    code = "unsupported_media_type"


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser with the input guard (`load_json`); bodies must be UTF-8 (RFC 8259)."""

    def parse(
        self, stream: IO[Any], media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> Any:
        # rest_framework.parsers.get_encoding (DRF 3.18) is missing from djangorestframework-stubs 3.16.
        encoding: str = parsers.get_encoding(parser_context or {})  # type: ignore[attr-defined]
        if codecs.lookup(encoding).name != "utf-8":
            raise UnsupportedCharset(f"JSON bodies must be UTF-8; the Content-Type names charset {encoding[:40]!r}.")
        return load_json(stream.read(), strict=self.strict)
