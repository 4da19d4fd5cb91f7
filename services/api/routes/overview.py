"""Usage and quota, the dashboard summary, recommendations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from qjt.contracts import Preference
from services.api.deps import GatewayDep, PrincipalDep
from services.api.errors import ERROR_RESPONSES, ApiError, ErrorResponse
from services.api.routes.backends import backend_rows_to_out
from services.api.schemas import (
    Dashboard,
    InstanceUsageOut,
    RecommendationOut,
    UsageOut,
)
from services.api.submission import recommend

router = APIRouter(prefix="/v1", responses=ERROR_RESPONSES)


@router.get("/usage", tags=["usage"], summary="Your instances' usage and remaining quota")
async def usage(who: PrincipalDep, gw: GatewayDep) -> UsageOut:
    instances, totals = await gw.store.usage(who.user_id)
    out = []
    for row in instances:
        consumed, limit = row["usage_consumed_seconds"], row["usage_limit_seconds"]
        remaining = (
            max(limit - consumed, 0.0) if limit is not None and consumed is not None else None
        )
        out.append(
            InstanceUsageOut(
                crn=row["crn"],
                private=row["private"],
                usage_consumed_seconds=consumed,
                usage_limit_seconds=limit,
                usage_remaining_seconds=remaining,
                observed_at=row["observed_at"],
            )
        )
    return UsageOut(
        instances=out,
        jobs_billed_seconds=float(totals["billed"]),
        jobs_estimated_seconds=float(totals["estimated"]),
    )


@router.get(
    "/recommendations",
    tags=["backends"],
    summary="The best backends of yours for a circuit of this many qubits",
    responses={503: {"model": ErrorResponse, "description": "Recommender unavailable"}},
)
async def recommendations(
    who: PrincipalDep,
    gw: GatewayDep,
    num_qubits: Annotated[int, Query(ge=1, le=10_000)] = 1,
    preference: Annotated[Preference, Query()] = "balanced",
    top: Annotated[int, Query(ge=1, le=20)] = 3,
) -> list[RecommendationOut]:
    backends = backend_rows_to_out(await gw.store.backends(who.user_id))
    scores = await recommend(gw, who, backends, num_qubits, top_n=top, preference=preference)
    return [RecommendationOut(**s.model_dump()) for s in scores]


@router.get("/dashboard", tags=["usage"], summary="Jobs by status, least busy backend, top 3")
async def dashboard(who: PrincipalDep, gw: GatewayDep) -> Dashboard:
    counts = await gw.store.counts_by_status(who.owner)
    backends = backend_rows_to_out(await gw.store.backends(who.user_id))
    least = next((b.name for b in backends if b.least_busy), None)
    note = None
    top: list[RecommendationOut] = []
    try:
        scores = await recommend(gw, who, backends, 1, top_n=3)
        top = [RecommendationOut(**s.model_dump()) for s in scores]
    except ApiError as exc:
        note = exc.message
    by_status = {name: counts.get(name, 0) for name in
                 ("Queued", "Running", "Completed", "Failed", "Cancelled")}  # fmt: skip
    return Dashboard(
        jobs_by_status=by_status,
        total_jobs=sum(by_status.values()),
        least_busy_backend=least,
        recommendations=top,
        recommendations_note=note,
    )
