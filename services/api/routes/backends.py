"""Backends: status across the user's instances, configuration, calibration."""

from __future__ import annotations

import statistics
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from qjt.bus import RpcError
from qjt.contracts import PredictReply, PredictRequest, PredictStrategy
from services.api.deps import GatewayDep, PrincipalDep, as_utc
from services.api.errors import ERROR_RESPONSES, ApiError, ErrorResponse
from services.api.schemas import (
    BackendDetail,
    BackendOut,
    CalibrationHistory,
    CalibrationMetric,
    CalibrationPoint,
    CalibrationSummary,
    PredictionOut,
    QubitOut,
    Readiness,
)

router = APIRouter(prefix="/v1/backends", tags=["backends"], responses=ERROR_RESPONSES)

# A qubit is flagged faulty beyond these (IBM's own "operational" flag is not in the
# calibration snapshot the client returns).
FAULTY_READOUT_ERROR = 0.2
FAULTY_T1_US = 10.0
FAULTY_T2_US = 5.0
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "Not a backend of your instances"}
}


def backend_rows_to_out(rows: list[dict[str, Any]]) -> list[BackendOut]:
    """Rows with the least-busy flag set on the operational backend with fewest pending."""
    ready = [r for r in rows if r["operational"] and r["pending_jobs"] is not None]
    least = min(ready, key=lambda r: (r["pending_jobs"], r["name"]))["name"] if ready else None
    return [
        BackendOut(
            name=r["name"],
            num_qubits=r["num_qubits"],
            operational=r["operational"],
            status_msg=r["status_msg"],
            pending_jobs=r["pending_jobs"],
            least_busy=r["name"] == least,
            private=bool(r["private"]),
            instances=list(r["instances"]),
            private_instances=list(r["private_instances"]),
            max_shots=r["max_shots"],
            observed_at=r["observed_at"],
        )
        for r in rows
    ]


@router.get("", summary="Backends of your instances, with status and pending jobs")
async def list_backends(who: PrincipalDep, gw: GatewayDep) -> list[BackendOut]:
    return backend_rows_to_out(await gw.store.backends(who.user_id))


async def visible_backend(gw: GatewayDep, user_id: str, name: str) -> BackendOut:
    """The backend if one of the user's instances lists it; 404 naming the choices if not."""
    backends = backend_rows_to_out(await gw.store.backends(user_id))
    for backend in backends:
        if backend.name == name:
            return backend
    choices = ", ".join(b.name for b in backends) or "none yet (the poller lists them)"
    raise ApiError(404, "unknown_backend", f"unknown backend {name!r}; yours are: {choices}")


def faulty(row: dict[str, Any]) -> bool:
    t1, t2, readout = row["t1_us"], row["t2_us"], row["readout_error"]
    return (
        readout is None
        or readout > FAULTY_READOUT_ERROR
        or (t1 is not None and t1 < FAULTY_T1_US)
        or (t2 is not None and t2 < FAULTY_T2_US)
    )


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(statistics.median(present)) if present else None


def summarize_calibration(
    qubits: list[dict[str, Any]], two_qubit_error: float | None
) -> CalibrationSummary | None:
    if not qubits:
        return None
    out = [QubitOut(**{k: q[k] for k in ("qubit", "t1_us", "t2_us", "readout_error")},
                    faulty=faulty(q)) for q in qubits]  # fmt: skip
    return CalibrationSummary(
        calibrated_at=qubits[0]["calibrated_at"],
        median_t1_us=_median([q.t1_us for q in out]),
        median_t2_us=_median([q.t2_us for q in out]),
        median_readout_error=_median([q.readout_error for q in out]),
        median_two_qubit_error=two_qubit_error,
        faulty_qubits=[q.qubit for q in out if q.faulty],
        qubits=out,
    )


def readiness(backend: BackendOut, calibration: CalibrationSummary | None) -> Readiness:
    reasons: list[str] = []
    operational = bool(backend.operational)
    if not operational:
        reasons.append(f"backend reports {backend.status_msg or 'not operational'}")
    total = backend.num_qubits or (len(calibration.qubits) if calibration else 0)
    bad = len(calibration.faulty_qubits) if calibration else 0
    if calibration is None:
        reasons.append("no calibration recorded yet")
    elif bad:
        reasons.append(f"{bad} of {total} qubits are faulty")
    usable = total - bad
    return Readiness(
        operational=operational,
        usable_qubits=usable,
        faulty_qubits=bad,
        ready=operational and calibration is not None and usable > 0,
        reasons=reasons,
    )


@router.get(
    "/{name}",
    summary="A backend's configuration, calibration summary and readiness",
    responses=NOT_FOUND,
)
async def backend_detail(name: str, who: PrincipalDep, gw: GatewayDep) -> BackendDetail:
    backend = await visible_backend(gw, who.user_id, name)
    config = await gw.store.backend_config(name) or {}
    qubits, two_qubit_error = await gw.store.latest_calibration(name)
    calibration = summarize_calibration(qubits, two_qubit_error)
    return BackendDetail(
        **backend.model_dump(),
        basis_gates=list(config.get("basis_gates") or []),
        coupling_map=[list(pair) for pair in config.get("coupling_map") or []],
        simulator=bool(config.get("simulator", False)),
        processor_type=config.get("processor_type"),
        calibration=calibration,
        readiness=readiness(backend, calibration),
    )


@router.get(
    "/{name}/prediction",
    summary="Predicted queue wait for a job submitted now: median and 80% interval",
    responses={
        **NOT_FOUND,
        503: {"model": ErrorResponse, "description": "Predictor unavailable"},
    },
)
async def prediction(  # noqa: PLR0917 (query parameters)
    name: str,
    who: PrincipalDep,
    gw: GatewayDep,
    num_circuits: Annotated[int, Query(ge=1, le=10_000)] = 1,
    shots: Annotated[int | None, Query(ge=1, le=10_000_000, description="Per circuit.")] = None,
    strategy: Annotated[
        PredictStrategy, Query(description="`learned`, or `seed` (the original formula).")
    ] = "learned",
) -> PredictionOut:
    await visible_backend(gw, who.user_id, name)
    request = PredictRequest(
        request_id=uuid.uuid4().hex,
        backend=name,
        num_circuits=num_circuits,
        shots=shots,
        strategy=strategy,
    )
    try:
        reply = await gw.bus.request(request, PredictReply, timeout_s=gw.settings.rpc_timeout_s)
    except RpcError as exc:
        raise ApiError(503, "predictor_unavailable", f"no prediction available ({exc})") from None
    if reply.error:
        raise ApiError(503, "predictor_unavailable", reply.error)
    return PredictionOut(
        backend=name,
        pending_jobs=reply.pending_jobs,
        predicted_wait_s=reply.predicted_wait_s,
        wait_low_s=reply.wait_low_s,
        wait_high_s=reply.wait_high_s,
        predicted_start_at=reply.predicted_start_at,
        model=reply.model,
        note=reply.note,
    )


@router.get(
    "/{name}/calibration",
    summary="Calibration history of one metric, newest first",
    responses=NOT_FOUND,
)
async def calibration_history(  # noqa: PLR0917 (query parameters)
    name: str,
    who: PrincipalDep,
    gw: GatewayDep,
    metric: Annotated[CalibrationMetric, Query(description="Which number.")] = "t1_us",
    since: Annotated[
        datetime | None, Query(alias="from", description="ISO 8601, inclusive")
    ] = None,
    until: Annotated[datetime | None, Query(alias="to", description="ISO 8601, exclusive")] = None,
    qubit: Annotated[list[Annotated[int, Query(ge=0, le=100_000)]] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> CalibrationHistory:
    await visible_backend(gw, who.user_id, name)
    since, until = as_utc(since), as_utc(until)
    if since and until and since >= until:
        raise ApiError(422, "invalid_range", "'from' must be before 'to'")
    rows = await gw.store.calibration_history(
        name,
        metric=metric,
        since=since,
        until=until,
        qubits=qubit or [],
        limit=limit,
    )
    return CalibrationHistory(
        backend=name,
        points=[CalibrationPoint(metric=metric, **row) for row in rows],
    )
