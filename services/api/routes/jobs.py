"""Jobs: submit, list, details, cancel, status of many, export, live events."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from nats.aio.msg import Msg

from qjt.bus import TRANSIENT_ERRORS
from qjt.contracts import (
    DISPLAY_STATUS,
    FINAL_STATUSES,
    STATUS_RANK,
    CancelJob,
    JobAccepted,
    SubmitJob,
    stable_hash,
    user_tags,
)
from services.api.deps import GatewayDep, PrincipalDep, as_utc
from services.api.errors import ERROR_RESPONSES, ApiError, ErrorResponse
from services.api.schemas import (
    Accepted,
    CancelAccepted,
    EstimatorOutcome,
    JobDetail,
    JobOut,
    JobPage,
    JobResultOut,
    JobStatusOut,
    SamplerOutcome,
    StatusAnswer,
    StatusQuery,
    SubmitRequest,
    TimelineEntry,
)
from services.api.store import JobFilter, decode_cursor, encode_cursor
from services.api.submission import checked, plan

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERROR_RESPONSES)

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such job of yours"}
}
STATUS_NAMES = {name.lower(): [name] for name in DISPLAY_STATUS} | {
    display.lower(): [s for s, d in DISPLAY_STATUS.items() if d == display]
    for display in set(DISPLAY_STATUS.values())
}
HEARTBEAT_S = 15.0
PUBLISH_ERRORS: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, OSError)


def job_out(row: dict[str, Any]) -> JobOut:
    return JobOut(
        **{k: row[k] for k in JobOut.model_fields if k not in ("status", "ibm_status", "tags")},
        status=DISPLAY_STATUS[row["status"]],
        ibm_status=row["status"],
        tags=user_tags(list(row["tags"] or [])),
    )


# -- submit ----------------------------------------------------------------------------


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Submit a job (Sampler, Estimator, or local Aer)",
    description="Checks the circuits (OpenQASM 2 or 3), observables, shots and backend, "
    "then queues the job and answers at once with its id; the submitter sends it to IBM. "
    "`backend: auto` takes the recommender's best backend. Repeat a request with the same "
    "`Idempotency-Key` to get the same job instead of a second one.",
    responses={
        409: {"model": ErrorResponse, "description": "Idempotency-Key reused for another job"},
        413: {"model": ErrorResponse, "description": "Body too large"},
        503: {"model": ErrorResponse, "description": "Message bus or recommender unavailable"},
    },
)
async def submit(
    body: SubmitRequest,
    who: PrincipalDep,
    gw: GatewayDep,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", min_length=1, max_length=200, description="Any string"),
    ] = None,
) -> Accepted:
    request_hash = stable_hash(body.model_dump(mode="json"))
    if idempotency_key is not None:
        earlier = await _earlier(gw, who.user_id, idempotency_key, request_hash)
        if earlier is not None:
            response.headers["Location"] = earlier.location
            return earlier
    summaries = await checked(body, gw.settings.api_max_shots, gw.settings.api_max_circuits)
    where = await plan(body, who, gw, summaries)
    job_id = uuid.uuid4().hex
    accepted = JobAccepted(
        job_id=job_id,
        user_id=who.user_id,
        primitive=body.primitive,
        backend=where.backend,
        instance=where.instance,
        shots=body.shots,
        num_circuits=len(body.circuits),
        tags=body.tags,
        priority=body.priority,
    )
    command = SubmitJob(
        job_id=job_id,
        user_id=who.user_id,
        primitive=body.primitive,
        circuits=body.circuits,
        backend=where.backend,
        instance=where.instance,
        shots=body.shots,
        observables=where.observables,
        tags=body.tags,
        priority=body.priority,
    )
    ledger = {
        "job_id": job_id,
        "user_id": who.user_id,
        "idempotency_key": idempotency_key,
        "request_hash": request_hash,
        "primitive": body.primitive,
        "backend": where.backend,
        "instance": where.instance,
        "shots": body.shots,
        "num_circuits": len(body.circuits),
        "tags": body.tags,
        "priority": body.priority,
    }
    # The ledger row commits only if both messages were stored by JetStream, so a failed
    # publish leaves nothing; a retried request with the same key finds the first job.
    async with gw.store.pool.connection() as conn, conn.transaction():
        if not await gw.store.insert_submission(conn, ledger):
            earlier = await _earlier(gw, who.user_id, idempotency_key or "", request_hash)
            if earlier is None:
                raise ApiError(409, "conflict", "a concurrent request used this Idempotency-Key")
            response.headers["Location"] = earlier.location
            return earlier
        try:
            await gw.bus.publish_many([accepted, command])
        except PUBLISH_ERRORS as exc:
            raise ApiError(
                503, "bus_unavailable", f"could not queue the job ({type(exc).__name__}); retry"
            ) from None
    location = f"/v1/jobs/{job_id}"
    response.headers["Location"] = location
    return Accepted(
        job_id=job_id,
        status="Queued",
        backend=where.backend,
        instance=where.instance,
        location=location,
    )


async def _earlier(gw: GatewayDep, user_id: str, key: str, request_hash: str) -> Accepted | None:
    row = await gw.store.idempotent_submission(user_id, key)
    if row is None:
        return None
    if row["request_hash"] != request_hash:
        raise ApiError(
            409,
            "idempotency_key_reused",
            f"Idempotency-Key {key!r} was used for a different request (job {row['job_id']})",
        )
    job = await gw.store.job(row["job_id"], user_id)
    return Accepted(
        job_id=row["job_id"],
        status=DISPLAY_STATUS[job["status"]] if job else "Queued",
        backend=row["backend"],
        instance=row["instance"],
        location=f"/v1/jobs/{row['job_id']}",
    )


# -- list, export ------------------------------------------------------------------------


def job_filter(  # noqa: PLR0917 (query parameters)
    who: PrincipalDep,
    backend: Annotated[list[str] | None, Query(description="Backend name(s).")] = None,
    status_: Annotated[
        list[str] | None,
        Query(
            alias="status",
            description="Queued, Running, Completed, Failed, Cancelled, or "
            "an IBM status (QUEUED, DONE, …).",
        ),
    ] = None,
    tag: Annotated[list[str] | None, Query(description="Jobs with all these tags.")] = None,
    priority: Annotated[int | None, Query(ge=1, le=10)] = None,
    created_from: Annotated[datetime | None, Query(description="ISO 8601, inclusive.")] = None,
    created_to: Annotated[datetime | None, Query(description="ISO 8601, exclusive.")] = None,
    user: Annotated[str | None, Query(description="ops only: one user's jobs.")] = None,
) -> JobFilter:
    statuses: list[str] = []
    for name in status_ or []:
        if name.lower() not in STATUS_NAMES:
            known = sorted({*DISPLAY_STATUS.values(), *DISPLAY_STATUS})
            raise ApiError(
                422, "invalid_status", f"unknown status {name!r}; use one of {', '.join(known)}"
            )
        statuses += STATUS_NAMES[name.lower()]
    if user is not None and not who.is_ops and user != who.user_id:
        raise ApiError(403, "forbidden", "only the ops role may list other users' jobs")
    created_from, created_to = as_utc(created_from), as_utc(created_to)
    if created_from and created_to and created_from >= created_to:
        raise ApiError(422, "invalid_range", "created_from must be before created_to")
    return JobFilter(
        owner=who.owner,
        user=user,
        backends=backend or [],
        statuses=statuses,
        tags=tag or [],
        priority=priority,
        created_from=created_from,
        created_to=created_to,
    )


FilterDep = Annotated[JobFilter, Depends(job_filter)]


FORBIDDEN: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorResponse, "description": "`user` names someone else (ops only)"}
}


@router.get(
    "",
    summary="List your jobs, newest first, with filters and keyset pagination",
    responses=FORBIDDEN,
)
async def list_jobs(
    gw: GatewayDep,
    where: FilterDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=500, description="From `next_cursor`.")] = None,
) -> JobPage:
    after = None
    if cursor:
        try:
            after = decode_cursor(cursor)
        except ValueError:
            raise ApiError(422, "invalid_cursor", "cursor is not one this API gave") from None
    rows = await gw.store.list_jobs(where, limit + 1, after)
    page = rows[:limit]
    more = len(rows) > limit
    next_cursor = encode_cursor(page[-1]["created_at"], page[-1]["id"]) if more else None
    return JobPage(jobs=[job_out(r) for r in page], next_cursor=next_cursor)


EXPORT_COLUMNS = [name for name in JobOut.model_fields]


@router.get(
    "/export",
    summary="Export the filtered jobs as CSV or JSON",
    response_class=Response,
    responses={
        200: {
            "description": "The jobs; `X-Export-Truncated: true` if the row cap was reached",
            "content": {"text/csv": {}, "application/json": {}},
        },
        **FORBIDDEN,
    },
)
async def export_jobs(
    gw: GatewayDep,
    where: FilterDep,
    format_: Annotated[Literal["csv", "json"], Query(alias="format")] = "csv",
) -> Response:
    cap = gw.settings.api_export_max_rows
    rows = await gw.store.list_jobs(where, cap + 1)
    jobs = [job_out(r) for r in rows[:cap]]
    headers = {
        "Content-Disposition": f'attachment; filename="jobs.{format_}"',
        "X-Export-Truncated": "true" if len(rows) > cap else "false",
    }
    if format_ == "json":
        body = json.dumps([j.model_dump(mode="json") for j in jobs])
        return Response(body, media_type="application/json", headers=headers)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    for job in jobs:
        values = job.model_dump(mode="json")
        values["tags"] = ";".join(job.tags)
        writer.writerow(["" if values[c] is None else values[c] for c in EXPORT_COLUMNS])
    return Response(out.getvalue(), media_type="text/csv", headers=headers)


# -- status of many, live events ------------------------------------------------------------


@router.post("/status", summary="Status of up to 1,000 jobs in one call")
async def job_statuses(body: StatusQuery, who: PrincipalDep, gw: GatewayDep) -> StatusAnswer:
    ids = list(dict.fromkeys(body.job_ids))
    rows = await gw.store.statuses(ids, who.owner)
    found = {
        r["id"]: JobStatusOut(
            status=DISPLAY_STATUS[r["status"]],
            ibm_status=r["status"],
            ibm_job_id=r["ibm_job_id"],
            updated_at=r["updated_at"],
        )
        for r in rows
    }
    return StatusAnswer(statuses=found, not_found=[i for i in ids if i not in found])


@router.get(
    "/events",
    summary="Server-Sent Events: your jobs' events as they happen",
    description="Each event is `event: <type>` (job.accepted, job.submitted, job.status, "
    "job.result, job.failed, job.cancelled) with the event JSON as `data`. A comment line "
    "is sent every 15 s to keep the connection open.",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "An event stream"}},
)
async def job_events(
    request: Request,
    who: PrincipalDep,
    gw: GatewayDep,
    job_id: Annotated[str | None, Query(max_length=100, description="Only this job.")] = None,
) -> StreamingResponse:
    queue: asyncio.Queue[Msg] = asyncio.Queue(maxsize=10_000)

    async def on_event(msg: Msg) -> None:
        if not queue.full():
            queue.put_nowait(msg)

    sub = await gw.bus.nc.subscribe("qjt.evt.job.>", cb=on_event)

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield b": connected\n\n"
            while not await request.is_disconnected():
                try:
                    msg = await asyncio.wait_for(queue.get(), timeout=HEARTBEAT_S)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                event = _visible_event(msg.data, who.owner, job_id)
                if event is not None:
                    kind, event_id = event.get("type", "job"), event.get("id", "")
                    data = json.dumps(event, separators=(",", ":"))
                    yield f"id: {event_id}\nevent: {kind}\ndata: {data}\n\n".encode()
        finally:
            await sub.unsubscribe()

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _visible_event(data: bytes, owner: str | None, job_id: str | None) -> dict[str, Any] | None:
    try:
        event = json.loads(data)
    except ValueError:
        return None
    if not isinstance(event, dict):
        return None
    if owner is not None and event.get("user_id") != owner:
        return None
    if job_id is not None and event.get("job_id") != job_id:
        return None
    return event


# -- one job --------------------------------------------------------------------------------


@router.get("/{job_id}", summary="A job with its timeline and result", responses=NOT_FOUND)
async def job_detail(job_id: str, who: PrincipalDep, gw: GatewayDep) -> JobDetail:
    row = await gw.store.job(job_id, who.owner)
    if row is None:
        raise ApiError(404, "not_found", f"no job {job_id!r} of yours")
    timeline: list[TimelineEntry] = []
    seen: set[str] = set()
    # A lifecycle in status order: IBM's clock and ours may disagree by a little, and a
    # job's result can be recorded before a late status poll.
    events = sorted(
        await gw.store.timeline(job_id),
        key=lambda e: (STATUS_RANK[e["status"]], e["occurred_at"]),
    )
    for event in events:
        if event["status"] in seen:
            continue
        seen.add(event["status"])
        timeline.append(
            TimelineEntry(
                status=DISPLAY_STATUS[event["status"]],
                ibm_status=event["status"],
                event=event["event_type"],
                at=event["occurred_at"],
            )
        )
    result = await gw.store.result(job_id)
    return JobDetail(
        **job_out(row).model_dump(),
        timeline=timeline,
        result=result_out(result) if result else None,
    )


def result_out(row: dict[str, Any]) -> JobResultOut:
    """Counts with probabilities per circuit, or values with standard errors."""
    sampler = None
    if row["counts"] is not None:
        sampler = []
        for counts in row["counts"]:
            shots = sum(counts.values())
            sampler.append(
                SamplerOutcome(
                    counts=counts,
                    probabilities={k: v / shots for k, v in counts.items()} if shots else {},
                    shots=shots,
                )
            )
    estimator = None
    if row["expectation_values"] is not None:
        errors = row["standard_errors"] or [None] * len(row["expectation_values"])
        estimator = [
            EstimatorOutcome(expectation_value=value, standard_error=error)
            for value, error in zip(row["expectation_values"], errors, strict=False)
        ]
    return JobResultOut(sampler=sampler, estimator=estimator, metrics=row["metrics"] or {})


@router.post(
    "/{job_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Cancel a job that has not finished",
    responses={
        **NOT_FOUND,
        409: {"model": ErrorResponse, "description": "The job already finished"},
    },
)
async def cancel_job(job_id: str, who: PrincipalDep, gw: GatewayDep) -> CancelAccepted:
    row = await gw.store.job(job_id, who.owner)
    if row is None:
        raise ApiError(404, "not_found", f"no job {job_id!r} of yours")
    if row["status"] in FINAL_STATUSES:
        raise ApiError(
            409, "already_finished", f"job {job_id} is already {DISPLAY_STATUS[row['status']]}"
        )
    try:
        await gw.bus.publish(
            CancelJob(
                job_id=job_id,
                user_id=row["user_id"],
                primitive=row["primitive"],
                instance=row["instance"],
            )
        )
    except PUBLISH_ERRORS as exc:
        raise ApiError(
            503, "bus_unavailable", f"could not queue the cancel ({exc}); retry"
        ) from None
    return CancelAccepted(job_id=job_id)
