"""The Content-Types the API's parser takes as JSON, and some it refuses (415).

DRF matches `application/json` against `application/*`, `*/*` and `*/json` too, with any
parameters; every one of these must be treated exactly as `application/json`. The security
matrix, the hostile-body table and the schema fuzz run with each of them.
"""

from __future__ import annotations

ACCEPTED = [
    "application/json",
    "application/json; charset=utf-8",
    "Application/JSON; charset=UTF8",
    "application/*",
    "*/*",
    "*/json",
    "*/*; q=0.1",
]
#: Refused with 415: JSON-like types DRF does not match, other types, a non-UTF-8 charset, none.
REFUSED = [
    "application/vnd.api+json",
    "application/merge-patch+json",
    "text/json",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "application/json; charset=utf-16",
    "application/json; charset=latin-1",
    "application/json, text/plain",
    "*",
    "",
]
