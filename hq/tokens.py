"""Token text: generation and hashing. The clear token is never stored."""

from __future__ import annotations

import hashlib
import secrets

TOKEN_PREFIX = "hq_pat_"
DISPLAY_PREFIX_LEN = 12


def generate() -> str:
    """Return a new token: the fixed prefix plus 32 random bytes, URL-safe."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Return the SHA-256 hex digest stored for a token.

    A plain hash is enough: tokens carry 256 random bits, so there is nothing to brute-force.
    """
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def display_prefix(token: str) -> str:
    """Return the leading characters kept to recognise a token in lists."""
    return token[:DISPLAY_PREFIX_LEN]
