"""The poller's IBM adapter: the real qiskit-ibm-runtime client, one account and instance.

Every method is blocking (the client is) and is called from a worker thread. Jobs are
listed in pages of up to 100 from `GET /jobs` (the client's RuntimeClient.jobs_get), whose
rows already carry each job's state, so tracking N jobs costs a request per page, not
one per job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from qiskit_ibm_runtime import QiskitRuntimeService
from requests import Response

from qjt.config import Settings
from qjt.contracts import (
    BackendCalibration,
    BackendConfiguration,
    BackendStatus,
    GateCalibration,
    JobMetrics,
    QubitCalibration,
)
from qjt.ibm import runtime_service

API_STATUS = {"QUEUED": "QUEUED", "RUNNING": "RUNNING", "COMPLETED": "DONE", "FAILED": "ERROR",
              "CANCELLED": "CANCELLED"}  # fmt: skip


@dataclass(frozen=True)
class IbmJob:
    """One row of IBM's job list."""

    ibm_job_id: str
    backend: str
    status: str
    created_at: datetime
    program: str | None
    tags: list[str]
    reason: str | None


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


RETRY_AFTER_STATUSES = (429, 503)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((moment - (now or datetime.now(UTC))).total_seconds(), 0.0)


class IbmAccount:
    """One credential and instance as the client sees them."""

    def __init__(self, token: str, instance: str, channel: str, settings: Settings) -> None:
        self.instance = instance
        self.retry_after_s: float | None = None
        self.service: QiskitRuntimeService = runtime_service(
            token, instance=instance, channel=channel, settings=settings
        )
        # The client raises on a 429 without its headers; a response hook keeps IBM's
        # Retry-After so the poller can wait as long as IBM asked.
        for client in self.service._api_clients.values():
            client._session.hooks["response"].append(self._remember_retry_after)

    def _remember_retry_after(self, response: Response, *_args: Any, **_kwargs: Any) -> Response:
        if response.status_code in RETRY_AFTER_STATUSES:
            self.retry_after_s = parse_retry_after(response.headers.get("Retry-After"))
        return response

    def take_retry_after(self) -> float | None:
        """The Retry-After of the last throttled answer (seconds), once."""
        value, self.retry_after_s = self.retry_after_s, None
        return value

    # -- backends ---------------------------------------------------------

    def backend_names(self) -> list[str]:
        return [backend.name for backend in self.service.backends()]

    def status(self, name: str) -> BackendStatus:
        status = self.service.backend(name).status()
        return BackendStatus(
            backend=name,
            operational=bool(status.operational),
            pending_jobs=int(status.pending_jobs),
            status_msg=str(status.status_msg or ""),
            observed_at=datetime.now(UTC),
        )

    def configuration(self, name: str) -> BackendConfiguration:
        return configuration_of(name, self.service.backend(name).configuration())

    def calibration(self, name: str) -> BackendCalibration | None:
        """The calibration in force now (None for a backend that publishes none)."""
        properties = self.service.backend(name).properties(refresh=True)
        return None if properties is None else calibration_of(name, properties)

    # -- jobs -------------------------------------------------------------

    def jobs(
        self,
        pending: bool | None,
        created_after: datetime | None = None,
        most: int | None = None,
    ) -> list[IbmJob]:
        """Jobs of this instance in one state class, newest first, a page of 100 per request.

        `most` stops after that many (None: all of them).
        """
        client = self.service._active_api_client  # the public jobs() fetches status one by one
        found: list[IbmJob] = []
        while True:
            page = client.jobs_get(
                limit=100, skip=len(found), pending=pending, created_after=created_after
            )
            rows = page.get("jobs", [])
            found += [self._job(row) for row in rows]
            done = not rows or len(found) >= int(page.get("count", 0))
            if done or (most is not None and len(found) >= most):
                return found[:most] if most is not None else found

    def job(self, ibm_job_id: str) -> IbmJob:
        client = self.service._active_api_client
        return self._job(client.job_get(ibm_job_id, exclude_params=True))

    def metrics(self, ibm_job_id: str) -> tuple[JobMetrics, dict[str, Any]]:
        raw = self.service._active_api_client.job_metadata(ibm_job_id)
        stamps = raw.get("timestamps") or {}
        usage = raw.get("usage") or {}
        metrics = JobMetrics(
            created_at=parse_time(stamps.get("created")),
            running_at=parse_time(stamps.get("running")),
            finished_at=parse_time(stamps.get("finished")),
            quantum_seconds=usage.get("quantum_seconds"),
        )
        return metrics, raw

    def result(self, ibm_job_id: str) -> dict[str, Any]:
        """Counts (Sampler) or expectation values (Estimator), one entry per PUB."""
        result = self.service.job(ibm_job_id).result()
        counts: list[dict[str, int]] = []
        values: list[float] = []
        errors: list[float] = []
        for pub in result:
            data = pub.data
            if hasattr(data, "evs"):
                values.append(float(data.evs))
                errors.append(float(getattr(data, "stds", 0.0)))
                continue
            merged: dict[str, int] = {}
            for field in data:
                for bits, n in data[field].get_counts().items():
                    merged[bits] = merged.get(bits, 0) + int(n)
            counts.append(merged)
        if values:
            return {"expectation_values": values, "standard_errors": errors}
        return {"counts": counts}

    def usage(self) -> dict[str, Any]:
        return dict(self.service.usage())

    def _job(self, row: dict[str, Any]) -> IbmJob:
        state = row.get("state") or {}
        status = API_STATUS.get(str(state.get("status", row.get("status", ""))).upper(), "QUEUED")
        program = (row.get("program") or {}).get("id")
        return IbmJob(
            ibm_job_id=str(row["id"]),
            backend=str(row.get("backend") or ""),
            status=status,
            created_at=parse_time(row.get("created")) or datetime.now(UTC),
            program=program,
            tags=list(row.get("tags") or []),
            reason=state.get("reason"),
        )


def configuration_of(name: str, config: Any) -> BackendConfiguration:
    """A configuration event from the client's `BackendConfiguration` of backend `name`."""
    return BackendConfiguration(
        backend=name,
        num_qubits=int(config.n_qubits),
        basis_gates=list(config.basis_gates),
        max_shots=int(getattr(config, "max_shots", 100_000) or 100_000),
        coupling_map=[(int(a), int(b)) for a, b in (config.coupling_map or [])],
        simulator=bool(getattr(config, "simulator", False)),
        processor_type=json.dumps(getattr(config, "processor_type", None) or {}) or None,
    )


def calibration_of(name: str, properties: Any) -> BackendCalibration:
    """A calibration event from the client's `BackendProperties` of backend `name`."""
    qubits = []
    for index, params in enumerate(properties.qubits):
        values = {p.name: (p.value, p.unit) for p in params}
        qubits.append(
            QubitCalibration(
                qubit=index,
                t1_us=_in_us(values.get("T1")),
                t2_us=_in_us(values.get("T2")),
                readout_error=_plain(values.get("readout_error")),
                frequency_ghz=_plain(values.get("frequency")),
                prob_meas0_prep1=_plain(values.get("prob_meas0_prep1")),
                prob_meas1_prep0=_plain(values.get("prob_meas1_prep0")),
            )
        )
    gates = []
    for gate in properties.gates:
        values = {p.name: (p.value, p.unit) for p in gate.parameters}
        error = _plain(values.get("gate_error"))
        gates.append(
            GateCalibration(
                gate=gate.gate,
                qubits=list(gate.qubits),
                error=min(error, 1.0) if error is not None else None,
                duration_ns=_in_ns(values.get("gate_length")),
            )
        )
    return BackendCalibration(
        backend=name,
        calibrated_at=_aware(properties.last_update_date),
        qubits=qubits,
        gates=gates,
    )


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _plain(value: tuple[Any, str] | None) -> float | None:
    return float(value[0]) if value and value[0] is not None else None


def _in_us(value: tuple[Any, str] | None) -> float | None:
    if not value or value[0] is None:
        return None
    number, unit = float(value[0]), value[1]
    return number * 1e6 if unit == "s" else number / 1e3 if unit == "ns" else number


def _in_ns(value: tuple[Any, str] | None) -> float | None:
    if not value or value[0] is None:
        return None
    number, unit = float(value[0]), value[1]
    return number * 1e9 if unit == "s" else number * 1e3 if unit == "us" else number
