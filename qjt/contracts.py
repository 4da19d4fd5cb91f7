"""Versioned commands, events and RPC messages: the only things services say to each other.

Every message carries an envelope (`type`, `version`, `id`, `occurred_at`) and its own
fields, and travels as JSON. `id` is a deterministic key (job id plus what happened), so
the bus can set `Nats-Msg-Id` from it and a retried publish is stored once.

Job statuses are IBM's (`qiskit_ibm_runtime.runtime_job_v2.JobStatus`) plus `ACCEPTED`,
which this system uses between a submit request and IBM's acceptance. `display_status`
maps them to the five names people see (Queued, Running, Completed, Failed, Cancelled).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

# ---------------------------------------------------------------------------
# Job statuses

JobStatus = Literal[
    "ACCEPTED", "INITIALIZING", "QUEUED", "VALIDATING", "RUNNING", "DONE", "ERROR", "CANCELLED"
]
DisplayStatus = Literal["Queued", "Running", "Completed", "Failed", "Cancelled"]
Primitive = Literal["sampler", "estimator", "aer"]

FINAL_STATUSES: frozenset[str] = frozenset({"DONE", "ERROR", "CANCELLED"})

# A job only moves forward through these ranks; a late, lower-ranked status never
# reopens a job (the recorder relies on this).
STATUS_RANK: dict[str, int] = {
    "ACCEPTED": 0,
    "INITIALIZING": 1,
    "VALIDATING": 2,
    "QUEUED": 3,
    "RUNNING": 4,
    "DONE": 5,
    "ERROR": 5,
    "CANCELLED": 5,
}

DISPLAY_STATUS: dict[str, DisplayStatus] = {
    "ACCEPTED": "Queued",
    "INITIALIZING": "Queued",
    "VALIDATING": "Queued",
    "QUEUED": "Queued",
    "RUNNING": "Running",
    "DONE": "Completed",
    "ERROR": "Failed",
    "CANCELLED": "Cancelled",
}


def display_status(status: str) -> DisplayStatus:
    """The name people see for an IBM or system job status (e.g. DONE → Completed)."""
    try:
        return DISPLAY_STATUS[status.upper()]
    except KeyError:
        raise ContractError(
            f"unknown job status {status!r}; expected one of {sorted(STATUS_RANK)}"
        ) from None


# ---------------------------------------------------------------------------
# IBM job tags: how a job submitted through this system is recognized on IBM

JOB_TAG_PREFIX = "qjt-job:"
# Shots per circuit the Sampler runs when a job names none (IBM's default).
DEFAULT_SHOTS = 4096
SYSTEM_TAG_PREFIXES = (JOB_TAG_PREFIX, "user:", "priority:")


def ibm_tags(job_id: str, user_id: str, priority: int, tags: list[str]) -> list[str]:
    """The tags put on an IBM job: this system's id, `user:<id>`, `priority:<p>`, the user's."""
    return [f"{JOB_TAG_PREFIX}{job_id}", f"user:{user_id}", f"priority:{priority}", *tags]


def user_tags(tags: list[str]) -> list[str]:
    """A job's tags without the ones this system adds."""
    return [t for t in tags if not t.startswith(SYSTEM_TAG_PREFIXES)]


# ---------------------------------------------------------------------------
# Envelope


class ContractError(ValueError):
    """A message that this build cannot read: unknown type or version, or invalid fields."""


def _now() -> datetime:
    return datetime.now(UTC)


def stable_hash(value: Any) -> str:
    """A short hash of a JSON-able value, stable across processes (for dedupe keys)."""
    encoded = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(encoded.encode()).hexdigest()[:16]


class Message(BaseModel):
    """Envelope shared by every command, event and RPC message."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str
    version: int = 1
    id: str = ""
    occurred_at: AwareDatetime = Field(default_factory=_now)

    subject_prefix: ClassVar[str] = ""

    def model_post_init(self, _context: Any) -> None:
        if not self.id:
            object.__setattr__(self, "id", f"{self.type}:{self.dedupe_key()}")

    def dedupe_key(self) -> str:
        """What makes two publishes of this message the same message."""
        raise NotImplementedError

    @property
    def subject(self) -> str:
        """The NATS subject this message is published on."""
        return self.subject_prefix

    def to_bytes(self) -> bytes:
        """JSON on the wire."""
        return self.model_dump_json().encode()


# ---------------------------------------------------------------------------
# Commands (stream QJT_CMD, work queue)


class ObservableTerm(BaseModel):
    """One Pauli term of an Estimator observable, e.g. `ZZ` with coefficient 1.0."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pauli: Annotated[str, Field(pattern=r"^[IXYZ]+$", min_length=1)]
    coefficient: float = 1.0


class SubmitJob(Message):
    """Run circuits on a backend as one job (from the API to the submitter)."""

    type: Literal["cmd.job.submit"] = "cmd.job.submit"
    subject_prefix: ClassVar[str] = "qjt.cmd.job.submit"

    job_id: str = Field(min_length=1, description="This system's job id (also the command id).")
    user_id: str = Field(min_length=1)
    primitive: Primitive
    circuits: list[str] = Field(min_length=1, description="OpenQASM 2 or 3 programs.")
    backend: str = Field(min_length=1)
    instance: str | None = Field(None, description="IBM instance CRN; None for local Aer.")
    shots: int | None = Field(None, ge=1, le=1_000_000)
    observables: list[list[ObservableTerm]] | None = Field(
        None, description="Estimator only: one observable (sum of Pauli terms) per circuit."
    )
    tags: list[str] = Field(default_factory=list)
    priority: int = Field(5, ge=1, le=10, description="1 (lowest) to 10 (highest).")

    def dedupe_key(self) -> str:
        return self.job_id


class CancelJob(Message):
    """Cancel a job that has not finished (from the API to the submitter)."""

    type: Literal["cmd.job.cancel"] = "cmd.job.cancel"
    subject_prefix: ClassVar[str] = "qjt.cmd.job.cancel"

    job_id: str = Field(min_length=1)
    user_id: str = Field(min_length=1)
    reason: str = "cancelled by user"
    primitive: Primitive | None = None
    instance: str | None = Field(None, description="IBM instance CRN the job was sent to.")

    def dedupe_key(self) -> str:
        return self.job_id


# ---------------------------------------------------------------------------
# Job events (stream QJT_EVT)


class JobEvent(Message):
    """Fields every job event has."""

    job_id: str = Field(min_length=1)
    user_id: str = Field(min_length=1)

    def dedupe_key(self) -> str:
        return self.job_id

    @property
    def subject(self) -> str:
        return f"qjt.evt.job.{self.type.removeprefix('job.')}"


class JobAccepted(JobEvent):
    """The gateway accepted a submit request; IBM has not seen it yet."""

    type: Literal["job.accepted"] = "job.accepted"
    primitive: Primitive
    backend: str
    instance: str | None = None
    shots: int | None = None
    num_circuits: int = Field(ge=1)
    tags: list[str] = Field(default_factory=list)
    priority: int = Field(5, ge=1, le=10)


class JobSubmitted(JobEvent):
    """IBM (or local Aer) accepted the job and gave it an id."""

    type: Literal["job.submitted"] = "job.submitted"
    ibm_job_id: str = Field(min_length=1)
    backend: str
    instance: str | None = None
    estimated_usage_seconds: float | None = Field(
        None, ge=0, description="IBM's `usage_estimation` of quantum seconds at creation."
    )


class JobStatusChanged(JobEvent):
    """IBM reports a new status for a job."""

    type: Literal["job.status"] = "job.status"
    ibm_job_id: str = Field(min_length=1)
    backend: str
    status: JobStatus
    status_at: AwareDatetime = Field(description="When IBM says the job entered this status.")
    # Known from IBM for jobs submitted outside this system (the poller tracks those too).
    primitive: Primitive | None = None
    instance: str | None = None
    tags: list[str] | None = None
    created_at: AwareDatetime | None = Field(None, description="IBM's creation time.")

    def dedupe_key(self) -> str:
        return f"{self.job_id}:{self.status}"


class JobMetrics(BaseModel):
    """IBM's `job.metrics()` timestamps and usage, in seconds where a number has a unit."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    created_at: AwareDatetime | None = None
    queued_at: AwareDatetime | None = None
    running_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None
    quantum_seconds: float | None = Field(None, ge=0)
    estimated_usage_seconds: float | None = Field(None, ge=0)


class JobResult(JobEvent):
    """A finished job's result: Sampler counts or Estimator values, one entry per circuit."""

    type: Literal["job.result"] = "job.result"
    ibm_job_id: str = Field(min_length=1)
    backend: str
    primitive: Primitive
    counts: list[dict[str, int]] | None = None
    expectation_values: list[float] | None = None
    standard_errors: list[float] | None = None
    metrics: JobMetrics = Field(default_factory=JobMetrics)


class JobCancelled(JobEvent):
    """The job was cancelled before it finished."""

    type: Literal["job.cancelled"] = "job.cancelled"
    ibm_job_id: str | None = None
    reason: str = ""


class JobFailed(JobEvent):
    """The job could not be submitted or IBM ended it in ERROR; `reason` is IBM's."""

    type: Literal["job.failed"] = "job.failed"
    ibm_job_id: str | None = None
    reason: str = Field(min_length=1)
    error_code: str | None = None


# ---------------------------------------------------------------------------
# Backend events (stream QJT_EVT)


class BackendEvent(Message):
    """Fields every backend event has."""

    backend: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_\-]+$")

    @property
    def subject(self) -> str:
        kind = self.type.removeprefix("backend.")
        return f"qjt.evt.backend.{kind}.{self.backend}"


class BackendStatus(BackendEvent):
    """A backend's operational state and queue length at one moment."""

    type: Literal["backend.status"] = "backend.status"
    operational: bool
    pending_jobs: int = Field(ge=0)
    status_msg: str = ""
    observed_at: AwareDatetime

    def dedupe_key(self) -> str:
        return f"{self.backend}:{self.observed_at.isoformat()}"


class QubitCalibration(BaseModel):
    """One qubit's calibration: T1 and T2 in µs, readout error as a probability."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    qubit: int = Field(ge=0)
    t1_us: float | None = Field(None, ge=0)
    t2_us: float | None = Field(None, ge=0)
    readout_error: float | None = Field(None, ge=0, le=1)
    frequency_ghz: float | None = None
    prob_meas0_prep1: float | None = Field(None, ge=0, le=1)
    prob_meas1_prep0: float | None = Field(None, ge=0, le=1)


class GateCalibration(BaseModel):
    """One gate on specific qubits: error as a probability, duration in ns."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gate: str = Field(min_length=1)
    qubits: list[int]
    error: float | None = Field(None, ge=0, le=1)
    duration_ns: float | None = Field(None, ge=0)


class BackendCalibration(BackendEvent):
    """A calibration snapshot (IBM's `backend.properties()` at `calibrated_at`)."""

    type: Literal["backend.calibration"] = "backend.calibration"
    calibrated_at: AwareDatetime = Field(description="IBM's `last_update_date`.")
    qubits: list[QubitCalibration]
    gates: list[GateCalibration] = Field(default_factory=list)

    def dedupe_key(self) -> str:
        return f"{self.backend}:{self.calibrated_at.isoformat()}"


class BackendConfiguration(BackendEvent):
    """A backend's static configuration: size, gates, limits, connectivity."""

    type: Literal["backend.config"] = "backend.config"
    num_qubits: int = Field(ge=1)
    basis_gates: list[str]
    max_shots: int = Field(ge=1)
    coupling_map: list[tuple[int, int]] = Field(default_factory=list)
    simulator: bool = False
    processor_type: str | None = None

    def dedupe_key(self) -> str:
        body = self.model_dump(exclude={"id", "occurred_at"})
        return f"{self.backend}:{stable_hash(body)}"


class InstanceUsage(Message):
    """An IBM instance's usage against its limit (`service.usage()`), in seconds."""

    type: Literal["instance.usage"] = "instance.usage"
    subject_prefix: ClassVar[str] = "qjt.evt.instance.usage"

    instance: str = Field(min_length=1, description="Instance CRN.")
    usage_consumed_seconds: float = Field(ge=0)
    usage_limit_seconds: float | None = Field(None, ge=0)
    observed_at: AwareDatetime

    def dedupe_key(self) -> str:
        return f"{self.instance}:{self.observed_at.isoformat()}"


class InstanceBackends(Message):
    """The backends an IBM instance may use, as the poller last listed them."""

    type: Literal["instance.backends"] = "instance.backends"
    subject_prefix: ClassVar[str] = "qjt.evt.instance.backends"

    instance: str = Field(min_length=1, description="Instance CRN.")
    backends: list[str]
    observed_at: AwareDatetime

    def dedupe_key(self) -> str:
        return (
            f"{self.instance}:{stable_hash(sorted(self.backends))}:{self.observed_at.isoformat()}"
        )


# ---------------------------------------------------------------------------
# Recommendations (event and RPC)


class BackendScore(BaseModel):
    """One ranked backend with why it ranks there."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: str
    score: float
    estimated_success_probability: float | None = Field(None, ge=0, le=1)
    predicted_wait_s: float | None = Field(None, ge=0)
    wait_low_s: float | None = Field(None, ge=0, description="80% interval of the wait.")
    wait_high_s: float | None = Field(None, ge=0)
    layout: list[int] = Field(default_factory=list, description="Physical qubits chosen.")
    error_budget: dict[str, float] = Field(
        default_factory=dict, description="Error by source: gates, readout, decoherence."
    )
    reasons: list[str] = Field(default_factory=list)


Strategy = Literal["seed", "esp"]
Preference = Literal["fastest", "best_quality", "balanced"]
PredictStrategy = Literal["seed", "learned"]


class RecommendationIssued(Message):
    """A ranking the recommender gave someone (kept for analysis)."""

    type: Literal["recommendation"] = "recommendation"
    subject_prefix: ClassVar[str] = "qjt.evt.recommendation"

    request_id: str = Field(min_length=1)
    user_id: str = Field(min_length=1)
    strategy: Strategy
    recommendations: list[BackendScore]

    def dedupe_key(self) -> str:
        return self.request_id


class RecommendRequest(Message):
    """Ask for the best backends for a circuit (`qjt.rpc.recommend`)."""

    type: Literal["rpc.recommend.request"] = "rpc.recommend.request"
    subject_prefix: ClassVar[str] = "qjt.rpc.recommend"

    request_id: str = Field(min_length=1)
    user_id: str = Field(min_length=1)
    circuit: str | None = Field(None, description="OpenQASM program; None ranks by size only.")
    num_qubits: int = Field(1, ge=1)
    backends: list[str] = Field(default_factory=list, description="Candidates the user may use.")
    strategy: Strategy = "esp"
    preference: Preference = "balanced"
    top_n: int = Field(3, ge=1, le=50)
    shots: int | None = Field(None, ge=1, description="Shots over all circuits (sizes the wait).")
    deadline_s: float | None = Field(
        None, gt=0, description="Answer within this many seconds, with what is scored by then."
    )

    def dedupe_key(self) -> str:
        return self.request_id


class RecommendReply(Message):
    """The recommender's answer, best first."""

    type: Literal["rpc.recommend.reply"] = "rpc.recommend.reply"

    request_id: str = Field(min_length=1)
    strategy: Strategy
    recommendations: list[BackendScore]
    error: str | None = None

    def dedupe_key(self) -> str:
        return self.request_id


class PredictRequest(Message):
    """Ask how long a job would wait in a backend's queue (`qjt.rpc.predict`)."""

    type: Literal["rpc.predict.request"] = "rpc.predict.request"
    subject_prefix: ClassVar[str] = "qjt.rpc.predict"

    request_id: str = Field(min_length=1)
    backend: str = Field(min_length=1)
    num_circuits: int = Field(1, ge=1)
    shots: int | None = Field(None, ge=1, description="Shots per circuit (default 4096).")
    strategy: PredictStrategy = "learned"

    def dedupe_key(self) -> str:
        return self.request_id


class PredictReply(Message):
    """Predicted queue wait in seconds: median and an 80% interval."""

    type: Literal["rpc.predict.reply"] = "rpc.predict.reply"

    request_id: str = Field(min_length=1)
    backend: str
    predicted_wait_s: float | None = Field(None, ge=0)
    wait_low_s: float | None = Field(None, ge=0)
    wait_high_s: float | None = Field(None, ge=0)
    predicted_start_at: AwareDatetime | None = None
    pending_jobs: int | None = Field(None, ge=0)
    model: PredictStrategy = "seed"
    note: str | None = None
    error: str | None = None

    def dedupe_key(self) -> str:
        return self.request_id


# ---------------------------------------------------------------------------
# Registry and parsing

MESSAGE_TYPES: tuple[type[Message], ...] = (
    SubmitJob,
    CancelJob,
    JobAccepted,
    JobSubmitted,
    JobStatusChanged,
    JobResult,
    JobCancelled,
    JobFailed,
    BackendStatus,
    BackendCalibration,
    BackendConfiguration,
    InstanceUsage,
    InstanceBackends,
    RecommendationIssued,
    RecommendRequest,
    RecommendReply,
    PredictRequest,
    PredictReply,
)


def _type_name(model: type[Message]) -> str:
    return str(model.model_fields["type"].default)


def _version(model: type[Message]) -> int:
    return int(model.model_fields["version"].default)


REGISTRY: dict[tuple[str, int], type[Message]] = {
    (_type_name(m), _version(m)): m for m in MESSAGE_TYPES
}


VERSIONS_BY_TYPE: dict[str, list[int]] = {}
for _kind, _number in sorted(REGISTRY):
    VERSIONS_BY_TYPE.setdefault(_kind, []).append(_number)

# This build writes the envelope first ('{"type":"…","version":N,'), so most messages can
# be validated straight from bytes; anything else takes the general path below.
_ENVELOPE = re.compile(rb'^\{"type":"([a-z.]+)","version":(\d+),')


def parse_message(raw: bytes | str | dict[str, Any]) -> Message:
    """Decode a message from the wire into its model.

    Raises `ContractError` naming the problem: not JSON, no type, a type or version this
    build does not know, or fields that fail validation.
    """
    if isinstance(raw, bytes):
        match = _ENVELOPE.match(raw)
        if match:
            model = REGISTRY.get((match.group(1).decode(), int(match.group(2))))
            if model is not None:
                try:
                    return model.model_validate_json(raw)
                except ValidationError:
                    pass  # the general path reports the error in full
    return _parse_general(raw)


def _parse_general(raw: bytes | str | dict[str, Any]) -> Message:
    if isinstance(raw, dict):
        data = raw
    else:
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ContractError(f"message is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ContractError(f"message must be a JSON object, got {type(data).__name__}")
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ContractError("message has no 'type' field")
    known_versions = VERSIONS_BY_TYPE.get(kind)
    if not known_versions:
        raise ContractError(f"unknown message type {kind!r}")
    version = data.get("version", 1)
    model = REGISTRY.get((kind, version)) if isinstance(version, int) else None
    if model is None:
        raise ContractError(
            f"message type {kind!r} version {version!r} is not supported "
            f"(this build reads version {', '.join(map(str, known_versions))})"
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ContractError(f"invalid {kind!r} v{version}: {exc}") from exc


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema of every message, keyed by `<type>.v<version>`."""
    return {f"{t}.v{v}": m.model_json_schema() for (t, v), m in sorted(REGISTRY.items())}
