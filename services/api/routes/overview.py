"""Usage and quota, the dashboard summary, recommendations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from qjt.circuits import CircuitError, parse_circuit, summarize
from qjt.contracts import Preference, Strategy
from services.api.deps import GatewayDep, PrincipalDep
from services.api.errors import ERROR_RESPONSES, ApiError, ErrorResponse
from services.api.routes.backends import backend_rows_to_out
from services.api.schemas import (
    Dashboard,
    InstanceUsageOut,
    RecommendationOut,
    RecommendBody,
    UsageOut,
)
from services.api.submission import invalid, recommend

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
    summary="The best backends of yours for a GHZ circuit of this many qubits",
    responses={503: {"model": ErrorResponse, "description": "Recommender unavailable"}},
)
async def recommendations(  # noqa: PLR0917 (query parameters)
    who: PrincipalDep,
    gw: GatewayDep,
    num_qubits: Annotated[int, Query(ge=1, le=10_000)] = 1,
    preference: Annotated[Preference, Query()] = "balanced",
    strategy: Annotated[Strategy, Query(description="`esp`, or `seed`.")] = "esp",
    top: Annotated[int, Query(ge=1, le=20)] = 3,
) -> list[RecommendationOut]:
    backends = backend_rows_to_out(await gw.store.backends(who.user_id))
    scores = await recommend(
        gw, who, backends, num_qubits, top_n=top, preference=preference, strategy=strategy
    )
    return [RecommendationOut(**s.model_dump()) for s in scores]


@router.post(
    "/recommendations",
    tags=["backends"],
    summary="The best backends of yours for this circuit, with the reasons",
    description="Transpiles the circuit for each of your operational backends that is "
    "large enough, estimates its success probability on the chosen qubits from the latest "
    "calibration, and combines it with the predicted queue wait by your preference. A "
    "backend not scored within the deadline ranks last with the reason; ask again.",
    responses={503: {"model": ErrorResponse, "description": "Recommender unavailable"}},
)
async def recommend_for_circuit(
    body: RecommendBody, who: PrincipalDep, gw: GatewayDep
) -> list[RecommendationOut]:
    try:
        width = summarize(parse_circuit(body.circuit)).num_qubits
    except CircuitError as exc:
        raise invalid("circuit", str(exc), "invalid_circuit") from None
    backends = backend_rows_to_out(await gw.store.backends(who.user_id))
    scores = await recommend(
        gw,
        who,
        backends,
        width,
        top_n=body.top,
        preference=body.preference,
        strategy=body.strategy,
        circuit=body.circuit,
        shots=body.shots,
    )
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
