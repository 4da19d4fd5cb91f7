"""The submitter's IBM adapter: turn a submit command into a Runtime job, find, cancel.

Everything here is the blocking qiskit-ibm-runtime client; the handlers call it through
`anyio.to_thread`. Clients are cached per credential and instance, backends (with their
target, needed to transpile) for a few minutes. Errors are sorted into three kinds:
`NotRunnable` (the circuits cannot be transpiled for the backend: the job fails with the
transpiler's reason), `IbmRefused` (IBM said no: the job fails with IBM's reason) and
`IbmUnavailable` (429, 5xx, no connection: try again later).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from qiskit import QuantumCircuit
from qiskit.exceptions import QiskitError
from qiskit_ibm_runtime import EstimatorV2, QiskitRuntimeService, SamplerV2
from requests import RequestException

from qjt.circuits import CircuitError, observable, parse_circuit, transpile_to_target
from qjt.config import Settings
from qjt.contracts import JOB_TAG_PREFIX, SubmitJob, ibm_tags
from qjt.ibm import runtime_service

BACKEND_TTL_S = 300.0
CLIENT_TTL_S = 1800.0
_TRANSIENT = re.compile(r"\b(429|50[0-9])\b|timed? ?out|connection|temporarily", re.IGNORECASE)


class IbmRefused(Exception):
    """IBM refused the job (bad input, no access, quota); the message is IBM's reason."""


class NotRunnable(Exception):
    """The circuits cannot be made to run on the backend; the message is the reason."""


class IbmUnavailable(Exception):
    """IBM could not be reached or asked us to slow down; retry later."""


@dataclass(frozen=True)
class Credential:
    """A decrypted token for one user and instance (never logged: see __repr__)."""

    credential_id: int
    channel: str
    instance: str
    token: str

    def __repr__(self) -> str:
        return f"Credential({self.credential_id}, {self.instance})"


@dataclass(frozen=True)
class IbmJobRef:
    """A job IBM holds for us."""

    ibm_job_id: str
    backend: str
    estimated_usage_seconds: float | None


def classify(exc: BaseException, token: str) -> Exception:
    """IbmUnavailable for throttling and outages, IbmRefused for everything IBM rejected."""
    text = str(exc).replace(token, "***")[:1000] if token else str(exc)[:1000]
    if isinstance(exc, RequestException | ConnectionError | TimeoutError) or _TRANSIENT.search(
        text
    ):
        return IbmUnavailable(text)
    return IbmRefused(text or type(exc).__name__)


class IbmRuntime:
    """Submits, finds and cancels jobs with the real client."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._clients: dict[tuple[int, str], tuple[float, QiskitRuntimeService]] = {}
        self._backends: dict[tuple[int, str, str], tuple[float, Any]] = {}

    def _client(self, cred: Credential) -> QiskitRuntimeService:
        key = (cred.credential_id, cred.instance)
        with self._lock:
            cached = self._clients.get(key)
            if cached and time.monotonic() - cached[0] < CLIENT_TTL_S:
                return cached[1]
        service = runtime_service(
            cred.token, instance=cred.instance, channel=cred.channel, settings=self.settings
        )
        with self._lock:
            self._clients[key] = (time.monotonic(), service)
        return service

    def _backend(self, cred: Credential, name: str) -> Any:
        key = (cred.credential_id, cred.instance, name)
        with self._lock:
            cached = self._backends.get(key)
            if cached and time.monotonic() - cached[0] < BACKEND_TTL_S:
                return cached[1]
        backend = self._client(cred).backend(name)
        _ = backend.target  # load properties now, so transpiling later needs no request
        with self._lock:
            self._backends[key] = (time.monotonic(), backend)
        return backend

    def find(self, cred: Credential, job_id: str) -> IbmJobRef | None:
        """The IBM job carrying this system's job id as a tag, if one was created."""
        try:
            service = self._client(cred)
            rows = service._active_api_client.jobs_get(  # one request, no per-job lookups
                limit=1, job_tags=[f"{JOB_TAG_PREFIX}{job_id}"]
            ).get("jobs", [])
        except (QiskitError, RequestException, OSError) as exc:
            raise classify(exc, cred.token) from None
        if not rows:
            return None
        row = rows[0]
        return IbmJobRef(
            ibm_job_id=str(row["id"]),
            backend=str(row.get("backend") or ""),
            estimated_usage_seconds=row.get("estimated_running_time_seconds"),
        )

    def submit(self, cred: Credential, command: SubmitJob) -> IbmJobRef:
        """Transpile for the backend and run the primitive in job mode."""
        try:
            backend = self._backend(cred, command.backend)
            circuits = [parse_circuit(source) for source in command.circuits]
            isa = transpile_to_target(
                circuits, backend.target, self.settings.submitter_optimization_level
            )
            tags = ibm_tags(command.job_id, command.user_id, command.priority, command.tags)
            if command.primitive == "estimator":
                job = self._run_estimator(backend, command, circuits, isa, tags)
            else:
                sampler = SamplerV2(mode=backend)
                sampler.options.environment.job_tags = tags
                job = sampler.run(isa, shots=command.shots)
            estimate = job.usage_estimation.get("quantum_seconds")
        except CircuitError as exc:  # before IBM was asked: our parsing or transpiling
            raise NotRunnable(str(exc)) from None
        except (QiskitError, RequestException, OSError, ValueError) as exc:
            raise classify(exc, cred.token) from None
        return IbmJobRef(
            ibm_job_id=job.job_id(),
            backend=command.backend,
            estimated_usage_seconds=float(estimate) if estimate is not None else None,
        )

    @staticmethod
    def _run_estimator(
        backend: Any,
        command: SubmitJob,
        circuits: list[QuantumCircuit],
        isa: list[QuantumCircuit],
        tags: list[str],
    ) -> Any:
        assert command.observables is not None
        estimator = EstimatorV2(mode=backend)
        estimator.options.environment.job_tags = tags
        if command.shots is not None:
            estimator.options.default_shots = command.shots
        pubs = [
            (mapped, observable(terms, original.num_qubits).apply_layout(mapped.layout))
            for original, mapped, terms in zip(circuits, isa, command.observables, strict=True)
        ]
        return estimator.run(pubs)

    def cancel(self, cred: Credential, ibm_job_id: str) -> None:
        try:
            self._client(cred).job(ibm_job_id).cancel()
        except (QiskitError, RequestException, OSError) as exc:
            raise classify(exc, cred.token) from None
