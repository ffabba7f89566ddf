"""Deciding a job that waits for a person: approve, reject, and expire (when its time runs out or
its requester or owner leaves the workspace).

A job enters `awaiting_approval`, with its request, through `queueapp.services.jobs` (a gated
submit or retry); every way out of it is here.
"""

from __future__ import annotations

import logging
from datetime import datetime
from functools import partial
from typing import Any
from uuid import UUID

from django.db import transaction
from django.db.models import Q

from hq import clock, permissions
from hq.errors import Conflict, ValidationFailed
from hq.models import User
from hq.selectors import Departure, member_departure
from queueapp import registry
from queueapp.models import DecidedVia, HITLRequest, HITLState, Job
from queueapp.services.jobs import MAX_TEXT_CHARS, job_args_validate, job_push, job_transition

logger = logging.getLogger(__name__)


class HITLStateConflict(Conflict):
    """The request was already decided another way, expired or cancelled."""

    code = "invalid_state"


def hitl_decide(
    *,
    request: HITLRequest,
    actor: User,
    decision: str,
    via: str,
    comment: str = "",
    args: dict[str, Any] | None = None,
) -> HITLRequest:
    """Approve (the job is queued and pushed, with `args` when given) or reject (the job ends `rejected`).

    The one service behind the API and the admin. Checks in order: who (403), the body (400),
    the state (409). Repeating the decision a request already has answers it unchanged; a
    request decided the other way, cancelled or expired (also one past `expires_at` that the
    expiry task has not reached yet, or, for an approval, one whose requester or job owner has
    left the workspace or been deactivated) is a 409 naming its state. Approve and reject racing on one
    request serialise on the job's row lock: exactly one wins.
    """
    if decision not in ("approve", "reject"):
        raise ValueError(f"decision must be 'approve' or 'reject', not {decision!r}")
    permissions.ensure_may_decide_hitl(request=request, actor=actor, via=via)
    if len(comment) > MAX_TEXT_CHARS:
        raise ValidationFailed("comment is too long.", fields={"comment": [f"At most {MAX_TEXT_CHARS} characters."]})
    if args is not None:
        if decision == "reject":
            raise ValidationFailed("Only an approval takes args.", fields={"args": ["Not with reject."]})
        job_args_validate(
            args,
            registry.get_function(request.function),
            lambda: permissions.acts_as_admin(user=actor, workspace_id=request.workspace_id, via=via),
        )
    target = HITLState.APPROVED if decision == "approve" else HITLState.REJECTED
    now = clock.now()
    with transaction.atomic():
        # Lock order everywhere: the job, then its request (job_cancel, job_retry, expiry).
        job = Job.objects.select_for_update(no_key=True).get(pk=request.job_id)
        hitl = HITLRequest.objects.select_for_update(no_key=True).get(pk=request.pk)
        if hitl.state == target:
            return hitl
        # An approval re-checks that the requester and the job's owner are still active members.
        approving = hitl.state == HITLState.PENDING and target == HITLState.APPROVED
        departed = _hitl_departure(hitl, job) if approving else ""
        expired_now = hitl.state == HITLState.PENDING and (hitl.expires_at <= now or departed)
        if expired_now:
            _hitl_expire_locked(hitl, now, job=job, why=departed)
        elif hitl.state == HITLState.PENDING:
            _hitl_apply(hitl, job, actor=actor, target=target, via=via, comment=comment, args=args, now=now)
            return hitl
    # Outside the block, so an expiry found on the way is committed before the 409.
    raise HITLStateConflict(f"This request is {hitl.state}; it cannot be {target}.", detail={"state": hitl.state})


def _hitl_apply(
    hitl: HITLRequest,
    job: Job,
    *,
    actor: User,
    target: str,
    via: str,
    comment: str,
    args: dict[str, Any] | None,
    now: datetime,
) -> None:
    approved = target == HITLState.APPROVED
    run_args = args if args is not None else hitl.args
    detail = {"hitl_request_id": str(hitl.pk), "via": via, "comment": comment}
    fields: dict[str, Any]
    if approved:
        detail["args_changed"] = run_args != hitl.args
        move, kind, fields = "approve", "approved", {"args": run_args, "due_at": now, "dispatched_at": now}
    else:
        error = f"Rejected by {actor.label}." + (f" {comment}" if comment else "")
        move, kind, fields = "reject", "rejected", {"finished_at": now, "error": error}
    moved = job_transition(job=job, move=move, kind=kind, actor=actor, detail=detail, **fields)
    if moved is None:
        raise HITLStateConflict(
            f"The job is {job.state}, not awaiting approval.", detail={"state": hitl.state, "job_state": job.state}
        )
    hitl.state, hitl.decided_by, hitl.decided_at, hitl.decided_via, hitl.comment = target, actor, now, via, comment
    hitl.approved_args = run_args if approved else None
    hitl.save(update_fields=["state", "decided_by", "decided_at", "decided_via", "comment", "approved_args"])
    if approved:
        transaction.on_commit(partial(job_push, moved), robust=True)


def _hitl_expire_locked(hitl: HITLRequest, now: datetime, job: Job | None = None, *, why: str = "") -> None:
    """Expire a pending request whose job row is locked by the caller; its job ends `rejected`.

    :param why: set when it expires early (its requester or owner left): recorded as the job's
        error, in the event and as the request's comment.
    """
    detail = {"hitl_request_id": str(hitl.pk), "expires_at": hitl.expires_at.isoformat()}
    if why:
        detail["reason"] = why
    moved = job_transition(
        job_id=hitl.job_id,
        job=job,
        move="reject",
        kind="approval_expired",
        detail=detail,
        finished_at=now,
        error=f"Expired unapproved: {why}" if why else "Nobody approved it before it expired.",
    )
    if moved is None:
        logger.warning("HITL request %s expired, but its job %s was not awaiting approval", hitl.pk, hitl.job_id)
    hitl.state, hitl.decided_at, hitl.decided_via = HITLState.EXPIRED, now, DecidedVia.SYSTEM
    hitl.comment = why or hitl.comment
    hitl.save(update_fields=["state", "decided_at", "decided_via", "comment"])


def _hitl_departure(hitl: HITLRequest, job: Job) -> str:
    """Why a pending request may no longer be approved: its requester or its job's owner left; else ""."""
    for who, user_id in (("The requester", hitl.requested_by_id), ("The job's owner", job.owner_id)):
        if user_id is not None:
            departure = member_departure(user_id=user_id, workspace_id=hitl.workspace_id)
            if departure is not None:
                return departure.reason(who)
    return ""


def hitl_expire_departed(*, user: User, workspace_id: UUID | None, departure: Departure) -> int:
    """Expire the pending requests a departed user asked for or whose job they own; their jobs end `rejected`.

    A departure hook (`hq.services.on_member_departure`): `workspace_id` None means every workspace.
    Uses the expiry's own transition, with the departure as the reason; returns how many expired.
    """
    rows = HITLRequest.objects.filter(Q(requested_by_id=user.pk) | Q(job__owner_id=user.pk), state=HITLState.PENDING)
    if workspace_id is not None:
        rows = rows.filter(workspace_id=workspace_id)
    now = clock.now()
    expired = 0
    for hitl_id, job_id in rows.order_by("created_at").values_list("id", "job_id"):
        with transaction.atomic():
            # Lock order everywhere: the job, then its request.
            job = Job.objects.select_for_update(no_key=True).filter(pk=job_id).first()
            hitl = (
                HITLRequest.objects.select_for_update(no_key=True).filter(pk=hitl_id, state=HITLState.PENDING).first()
            )
            if job is None or hitl is None:
                continue
            who = "The requester" if hitl.requested_by_id == user.pk else "The job's owner"
            _hitl_expire_locked(hitl, now, job=job, why=departure.reason(who))
            expired += 1
    return expired


def hitl_expire_due(*, batch: int = 500) -> int:
    """Expire pending requests past `expires_at` (their jobs end `rejected`); return how many.

    Rows another process holds are skipped and picked up on the next pass.
    """
    now = clock.now()
    due = HITLRequest.objects.filter(state=HITLState.PENDING, expires_at__lte=now).order_by("expires_at")
    expired = 0
    for hitl_id, job_id in due.values_list("id", "job_id")[:batch]:
        with transaction.atomic():
            if (
                Job.objects.select_for_update(skip_locked=True, no_key=True).filter(pk=job_id).values_list("pk").first()
                is None
            ):
                continue
            hitl = (
                HITLRequest.objects.select_for_update(no_key=True).filter(pk=hitl_id, state=HITLState.PENDING).first()
            )
            if hitl is None:
                continue
            _hitl_expire_locked(hitl, now)
            expired += 1
    return expired
