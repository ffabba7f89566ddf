"""HQ's Python client: no server dependencies (httpx only); `hq_client.django` is the optional extra.

from hq_client import Client

with Client("https://hq.example.com", "hq_pat_...") as hq:
    job = hq.job_submit("acme.send_invoice", {"invoice_id": 42})
    done = hq.wait(job["id"], timeout=60)
    for failed in hq.jobs(state="failed"):
        ...
"""

from hq_client._core import RetryPolicy
from hq_client._operations import MAX_BATCH, UNSET, submission
from hq_client.client import AsyncClient, Client
from hq_client.errors import (
    AuthError,
    Conflict,
    HQError,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    PlanLimitReached,
    RateLimited,
    ServerError,
    Timeout,
    TransportError,
    Unavailable,
    ValidationError,
)
from hq_client.types import FINISHED_STATES, parse_datetime

__all__ = [
    "FINISHED_STATES",
    "MAX_BATCH",
    "UNSET",
    "AsyncClient",
    "AuthError",
    "Client",
    "Conflict",
    "HQError",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "PlanLimitReached",
    "RateLimited",
    "RetryPolicy",
    "ServerError",
    "Timeout",
    "TransportError",
    "Unavailable",
    "ValidationError",
    "parse_datetime",
    "submission",
]
