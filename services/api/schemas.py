"""Request and response bodies of the HTTP API (separate from the storage rows)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, SecretStr

from qjt.contracts import (
    DisplayStatus,
    JobStatus,
    ObservableTerm,
    PredictStrategy,
    Preference,
    Strategy,
)
from qjt.demo import BELL_NO_MEASURE_QASM, BELL_QASM

Tag = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\s,]+$")]
Crn = Annotated[str, Field(min_length=1, max_length=512)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- accounts -----------------------------------------------------------------


class RegisterAccount(Strict):
    """An IBM Quantum token to register; it is validated with IBM and stored encrypted."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"token": "<your IBM Quantum API key>", "channel": "ibm_quantum_platform"}]
        },
    )

    token: SecretStr = Field(min_length=1, max_length=4096, description="IBM Quantum API key.")
    channel: Literal["ibm_quantum_platform", "ibm_cloud"] = "ibm_quantum_platform"
    instances: list[Crn] | None = Field(
        None,
        max_length=100,
        description="Instance CRNs to use; omitted: every instance the token can use.",
    )
    key_name: str = Field("", max_length=100, description="A label for the new API key.")


class InstanceOut(BaseModel):
    """An IBM instance of the user's account."""

    crn: str
    name: str = ""
    plan: str = ""
    private: bool
    enabled: bool = True


class Registered(BaseModel):
    """The new account's API key: shown once, stored only as a hash."""

    user_id: str
    api_key: str = Field(description="Send as `Authorization: Bearer <key>`. Shown only once.")
    key_id: int
    instances: list[InstanceOut]


class AccountOut(BaseModel):
    """Who the API key belongs to."""

    user_id: str
    role: Literal["user", "ops"]
    instances: list[InstanceOut]


class AddInstance(Strict):
    """Enable one more instance the registered token can use."""

    crn: Crn


class NewApiKey(Strict):
    """Create another API key for the same account."""

    name: str = Field("", max_length=100)


class ApiKeyOut(BaseModel):
    """An API key as listed (never the key itself)."""

    id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class CreatedApiKey(ApiKeyOut):
    api_key: str = Field(description="Shown only once.")


# -- backends -----------------------------------------------------------------


class BackendOut(BaseModel):
    """A backend the user can run on, with its latest status."""

    name: str
    num_qubits: int | None
    operational: bool | None
    status_msg: str | None
    pending_jobs: int | None
    least_busy: bool = Field(description="Fewest pending jobs among operational backends.")
    private: bool = Field(description="Reached through a private (dedicated) instance.")
    instances: list[str]
    private_instances: list[str] = Field(description="Those of `instances` that are private.")
    max_shots: int | None
    observed_at: datetime | None


class QubitOut(BaseModel):
    """One qubit's calibration: T1 and T2 in µs, readout error as a probability."""

    qubit: int
    t1_us: float | None
    t2_us: float | None
    readout_error: float | None
    faulty: bool


class CalibrationSummary(BaseModel):
    """The latest calibration snapshot, summarized."""

    calibrated_at: datetime
    median_t1_us: float | None
    median_t2_us: float | None
    median_readout_error: float | None
    median_two_qubit_error: float | None
    faulty_qubits: list[int]
    qubits: list[QubitOut]


class Readiness(BaseModel):
    """Whether the backend can take work now."""

    operational: bool
    usable_qubits: int
    faulty_qubits: int
    ready: bool
    reasons: list[str]


class BackendDetail(BackendOut):
    """Configuration, calibration summary and readiness."""

    basis_gates: list[str]
    coupling_map: list[list[int]]
    simulator: bool
    processor_type: str | None
    calibration: CalibrationSummary | None
    readiness: Readiness


CalibrationMetric = Literal["t1_us", "t2_us", "readout_error"]


class CalibrationPoint(BaseModel):
    qubit: int
    calibrated_at: datetime
    metric: CalibrationMetric
    value: float | None


class CalibrationHistory(BaseModel):
    backend: str
    points: list[CalibrationPoint]


# -- jobs ---------------------------------------------------------------------


class SubmitRequest(Strict):
    """A job: circuits in OpenQASM 2 or 3, run by a primitive on a backend."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "primitive": "sampler",
                    "circuits": [BELL_QASM],
                    "shots": 1000,
                    "backend": "auto",
                    "tags": ["bell"],
                    "priority": 5,
                },
                {
                    "primitive": "estimator",
                    "circuits": [BELL_NO_MEASURE_QASM],
                    "observables": [[{"pauli": "ZZ", "coefficient": 1.0}]],
                    "backend": "ibm_brisbane",
                },
            ]
        },
    )

    primitive: Literal["sampler", "estimator", "aer"] = Field(
        description="`sampler` or `estimator` on IBM, or `aer` to simulate locally."
    )
    circuits: list[Annotated[str, Field(min_length=1, max_length=200_000)]] = Field(
        min_length=1, description="OpenQASM 2 or 3 programs (one job runs them all)."
    )
    shots: int | None = Field(None, ge=1, description="Shots per circuit (Sampler, Aer).")
    observables: list[list[ObservableTerm]] | None = Field(
        None,
        description="Estimator (or Aer): one observable per circuit, each a sum of Pauli terms; "
        "one observable applies to every circuit. The rightmost letter acts on qubit 0.",
    )
    backend: str = Field(
        "auto",
        min_length=1,
        max_length=100,
        description="A backend name, or `auto` for the recommender's best.",
    )
    instance: Crn | None = Field(None, description="Which of your instances to use.")
    tags: list[Tag] = Field(default_factory=list, max_length=20)
    priority: int = Field(5, ge=1, le=10, description="1 (lowest) to 10 (highest).")
    preference: Preference = Field(
        "balanced",
        description="With `backend: auto`: `best_quality` (highest estimated success "
        "probability), `fastest` (shortest predicted wait) or `balanced`.",
    )


class Accepted(BaseModel):
    """The job was accepted; follow it at `location`."""

    job_id: str
    status: DisplayStatus
    backend: str
    instance: str | None
    location: str


class JobOut(BaseModel):
    """A job's current state."""

    id: str
    user_id: str
    ibm_job_id: str | None
    status: DisplayStatus
    ibm_status: JobStatus
    backend: str
    instance: str | None
    primitive: str | None
    shots: int | None
    num_circuits: int | None
    tags: list[str]
    priority: int
    error: str | None
    created_at: datetime
    submitted_at: datetime | None
    queued_at: datetime | None
    running_at: datetime | None
    finished_at: datetime | None
    quantum_seconds: float | None = Field(description="Billed quantum seconds (when finished).")
    estimated_usage_seconds: float | None = Field(description="IBM's estimate at submission.")


class JobPage(BaseModel):
    """One page of jobs, newest first; pass `next_cursor` as `cursor` for the next."""

    jobs: list[JobOut]
    next_cursor: str | None


class TimelineEntry(BaseModel):
    status: DisplayStatus
    ibm_status: JobStatus
    event: str
    at: datetime


class SamplerOutcome(BaseModel):
    counts: dict[str, int]
    probabilities: dict[str, float]
    shots: int


class EstimatorOutcome(BaseModel):
    expectation_value: float
    standard_error: float | None


class JobResultOut(BaseModel):
    """Per circuit: counts with probabilities (Sampler) or values with errors (Estimator)."""

    sampler: list[SamplerOutcome] | None = None
    estimator: list[EstimatorOutcome] | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)


class JobDetail(JobOut):
    timeline: list[TimelineEntry]
    result: JobResultOut | None


class CancelAccepted(BaseModel):
    job_id: str
    status: Literal["cancelling"] = "cancelling"


class StatusQuery(Strict):
    """Up to 1,000 job ids."""

    job_ids: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        min_length=1, max_length=1000
    )


class JobStatusOut(BaseModel):
    status: DisplayStatus
    ibm_status: JobStatus
    ibm_job_id: str | None
    updated_at: datetime


class StatusAnswer(BaseModel):
    statuses: dict[str, JobStatusOut]
    not_found: list[str]


# -- usage, dashboard -----------------------------------------------------------


class InstanceUsageOut(BaseModel):
    """An instance's usage against its limit, in seconds."""

    crn: str
    private: bool
    usage_consumed_seconds: float | None
    usage_limit_seconds: float | None
    usage_remaining_seconds: float | None
    observed_at: datetime | None


class UsageOut(BaseModel):
    instances: list[InstanceUsageOut]
    jobs_billed_seconds: float = Field(description="Quantum seconds billed for your jobs.")
    jobs_estimated_seconds: float = Field(description="IBM's estimates for your open jobs.")


class RecommendationOut(BaseModel):
    backend: str
    score: float
    estimated_success_probability: float | None = Field(
        description="The circuit's estimated success probability on the chosen qubits."
    )
    predicted_wait_s: float | None = Field(description="Median predicted queue wait.")
    wait_low_s: float | None = Field(description="80% interval of the wait, low end.")
    wait_high_s: float | None = Field(description="80% interval of the wait, high end.")
    layout: list[int] = Field(description="Physical qubits the circuit would use.")
    error_budget: dict[str, float] = Field(
        description="Error by source: gates, readout, decoherence."
    )
    reasons: list[str]


class RecommendBody(Strict):
    """A circuit to find the best backends for."""

    circuit: str = Field(min_length=1, max_length=200_000, description="OpenQASM 2 or 3.")
    preference: Preference = "balanced"
    strategy: Strategy = Field("esp", description="`esp`, or `seed` (the original formula).")
    shots: int | None = Field(None, ge=1, description="Shots over all circuits.")
    top: int = Field(3, ge=1, le=20)


class PredictionOut(BaseModel):
    """Predicted queue wait for a job on a backend, if it were submitted now."""

    backend: str
    pending_jobs: int | None
    predicted_wait_s: float | None = Field(description="Median, seconds.")
    wait_low_s: float | None = Field(description="80% interval, low end.")
    wait_high_s: float | None = Field(description="80% interval, high end.")
    predicted_start_at: datetime | None
    model: PredictStrategy = Field(description="`learned`, or `seed` when it fell back.")
    note: str | None = Field(description="Why the learned model did not answer, if it did not.")


class Dashboard(BaseModel):
    jobs_by_status: dict[DisplayStatus, int]
    total_jobs: int
    least_busy_backend: str | None
    recommendations: list[RecommendationOut]
    recommendations_note: str | None = None


NotificationEvent = Literal[
    "job.completed", "job.failed", "job.cancelled", "backend.alert", "quota.alert"
]


JOB_NOTIFICATIONS: tuple[NotificationEvent, ...] = ("job.completed", "job.failed", "job.cancelled")


class ChannelIn(Strict):
    """A destination for notifications."""

    kind: Literal["slack_webhook", "slack_bot", "webhook"]
    name: str = Field("", max_length=100)
    url: AnyHttpUrl | None = Field(None, description="Slack incoming webhook or webhook URL.")
    token: SecretStr | None = Field(None, max_length=500, description="Slack bot token.")
    slack_channel: str | None = Field(None, min_length=1, max_length=100)
    events: list[NotificationEvent] = Field(
        default_factory=lambda: list(JOB_NOTIFICATIONS), min_length=1
    )
    backends: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=200, description="Backend alerts for these only."
    )
    scope: Literal["mine", "all"] = "mine"


class ChannelOut(BaseModel):
    id: int
    kind: str
    name: str
    scope: str
    events: list[str]
    backends: list[str]
    target_hint: str = Field(description="Scheme and host only; the URL or token is secret.")
    slack_channel: str | None
    status: Literal["active", "failing"]
    failure: str | None = Field(description="Why the channel was reported failing.")
    created_at: datetime


class ChannelCreated(ChannelOut):
    signing_secret: str | None = Field(
        description="Webhooks: the HMAC-SHA256 key for X-QJT-Signature, shown only now."
    )


class DeliveryOut(BaseModel):
    id: int
    channel_id: int | None
    event: str
    status: Literal["pending", "sent", "failed"]
    attempts: int
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    next_attempt_at: datetime
