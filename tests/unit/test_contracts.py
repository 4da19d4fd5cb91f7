"""Every message round-trips JSON; unreadable ones fail with a clear reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from qjt.contracts import (
    MESSAGE_TYPES,
    REGISTRY,
    BackendCalibration,
    BackendConfiguration,
    BackendScore,
    BackendStatus,
    CancelJob,
    ContractError,
    GateCalibration,
    InstanceBackends,
    InstanceUsage,
    JobAccepted,
    JobCancelled,
    JobFailed,
    JobMetrics,
    JobResult,
    JobStatusChanged,
    JobSubmitted,
    Message,
    ObservableTerm,
    PredictReply,
    PredictRequest,
    QubitCalibration,
    RecommendationIssued,
    RecommendReply,
    RecommendRequest,
    SubmitJob,
    display_status,
    json_schemas,
    parse_message,
)

T = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)

SAMPLES: list[Message] = [
    SubmitJob(
        job_id="j1",
        user_id="u1",
        primitive="estimator",
        circuits=["OPENQASM 3.0; qubit[2] q;"],
        backend="fake_kyiv",
        instance="crn:v1:bluemix:public:quantum-computing:us-east:a/1::",
        shots=4000,
        observables=[[ObservableTerm(pauli="ZZ", coefficient=1.0)]],
        tags=["demo"],
        priority=7,
    ),
    CancelJob(job_id="j1", user_id="u1"),
    JobAccepted(
        job_id="j1", user_id="u1", primitive="sampler", backend="fake_kyiv", num_circuits=1
    ),
    JobSubmitted(job_id="j1", user_id="u1", ibm_job_id="ibm-1", backend="fake_kyiv"),
    JobStatusChanged(
        job_id="j1",
        user_id="u1",
        ibm_job_id="ibm-1",
        backend="fake_kyiv",
        status="RUNNING",
        status_at=T,
    ),
    JobResult(
        job_id="j1",
        user_id="u1",
        ibm_job_id="ibm-1",
        backend="fake_kyiv",
        primitive="sampler",
        counts=[{"00": 510, "11": 490}],
        metrics=JobMetrics(created_at=T, running_at=T, finished_at=T, quantum_seconds=2.5),
    ),
    JobCancelled(job_id="j1", user_id="u1", reason="cancelled by user"),
    JobFailed(job_id="j1", user_id="u1", reason="circuit too wide for backend", error_code="1517"),
    BackendStatus(backend="fake_kyiv", operational=True, pending_jobs=12, observed_at=T),
    BackendCalibration(
        backend="fake_kyiv",
        calibrated_at=T,
        qubits=[QubitCalibration(qubit=0, t1_us=210.5, t2_us=120.1, readout_error=0.012)],
        gates=[GateCalibration(gate="ecr", qubits=[0, 1], error=0.007, duration_ns=660)],
    ),
    BackendConfiguration(
        backend="fake_kyiv",
        num_qubits=127,
        basis_gates=["ecr", "rz", "sx", "x"],
        max_shots=100000,
        coupling_map=[(0, 1), (1, 2)],
    ),
    RecommendationIssued(
        request_id="r1",
        user_id="u1",
        strategy="esp",
        recommendations=[
            BackendScore(backend="fake_kyiv", score=0.9, estimated_success_probability=0.81)
        ],
    ),
    RecommendRequest(request_id="r1", user_id="u1", num_qubits=5),
    InstanceUsage(
        instance="crn:v1:x", usage_consumed_seconds=12.5, usage_limit_seconds=600, observed_at=T
    ),
    InstanceBackends(instance="crn:v1:x", backends=["ibm_kyiv", "ibm_sherbrooke"], observed_at=T),
    RecommendReply(request_id="r1", strategy="seed", recommendations=[]),
    PredictRequest(request_id="p1", backend="fake_kyiv"),
    PredictReply(
        request_id="p1", backend="fake_kyiv", predicted_wait_s=30.0, wait_low_s=10, wait_high_s=90
    ),
]


def test_samples_cover_every_message_type() -> None:
    assert {type(m) for m in SAMPLES} == set(MESSAGE_TYPES)


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: m.type)
def test_every_message_round_trips_json(message: Message) -> None:
    wire = message.to_bytes()
    decoded = parse_message(wire)
    assert type(decoded) is type(message)
    assert decoded == message
    assert json.loads(wire)["type"] == message.type and json.loads(wire)["version"] == 1


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: m.type)
def test_message_id_is_deterministic_so_retries_dedupe(message: Message) -> None:
    again = type(message).model_validate(
        message.model_dump() | {"id": "", "occurred_at": datetime.now(UTC)}
    )
    assert again.id == message.id
    assert message.id.startswith(message.type + ":")


def test_status_changes_of_one_job_have_distinct_ids() -> None:
    queued = JobStatusChanged(
        job_id="j", user_id="u", ibm_job_id="i", backend="b", status="QUEUED", status_at=T
    )
    running = queued.model_copy(update={"status": "RUNNING", "id": ""})
    running = JobStatusChanged.model_validate(running.model_dump())
    assert queued.id != running.id


def test_unknown_version_is_rejected_with_a_clear_error() -> None:
    data = SAMPLES[4].model_dump(mode="json") | {"version": 2}
    with pytest.raises(
        ContractError,
        match=r"'job\.status' version 2 is not supported \(this build reads version 1\)",
    ):
        parse_message(json.dumps(data))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"version": 1}', "no 'type' field"),
        (b'{"type": "job.teleported", "version": 1}', "unknown message type 'job.teleported'"),
        (
            b'{"type": "backend.status", "version": 1, "backend": "x"}',
            "invalid 'backend.status' v1",
        ),
    ],
)
def test_unreadable_messages_name_the_problem(raw: bytes, reason: str) -> None:
    with pytest.raises(ContractError, match=reason):
        parse_message(raw)


def test_invalid_fields_are_rejected() -> None:
    with pytest.raises(ValueError, match="shots"):
        SubmitJob(
            job_id="j", user_id="u", primitive="sampler", circuits=["x"], backend="b", shots=0
        )
    with pytest.raises(ValueError, match="pauli"):
        ObservableTerm(pauli="ZQ")
    with pytest.raises(ValueError, match="readout_error"):
        QubitCalibration(qubit=0, readout_error=1.5)


def test_subjects_follow_design() -> None:
    subjects = {m.type: m.subject for m in SAMPLES}
    assert subjects["cmd.job.submit"] == "qjt.cmd.job.submit"
    assert subjects["job.status"] == "qjt.evt.job.status"
    assert subjects["job.result"] == "qjt.evt.job.result"
    assert subjects["backend.calibration"] == "qjt.evt.backend.calibration.fake_kyiv"
    assert subjects["backend.config"] == "qjt.evt.backend.config.fake_kyiv"
    assert subjects["recommendation"] == "qjt.evt.recommendation"
    assert subjects["rpc.predict.request"] == "qjt.rpc.predict"


@pytest.mark.parametrize(
    ("ibm", "shown"),
    [
        ("INITIALIZING", "Queued"),
        ("QUEUED", "Queued"),
        ("RUNNING", "Running"),
        ("DONE", "Completed"),
        ("ERROR", "Failed"),
        ("CANCELLED", "Cancelled"),
        ("done", "Completed"),
    ],
)
def test_display_status_uses_the_seed_names(ibm: str, shown: str) -> None:
    assert display_status(ibm) == shown


def test_display_status_rejects_unknown_status() -> None:
    with pytest.raises(ContractError, match="unknown job status 'LOST'"):
        display_status("LOST")


def test_ibm_statuses_match_the_client() -> None:
    from typing import get_args

    from qiskit_ibm_runtime.runtime_job_v2 import JobStatus as ClientStatus

    from qjt.contracts import JobStatus

    assert set(get_args(ClientStatus)) <= set(get_args(JobStatus))


def test_json_schema_for_every_registered_message() -> None:
    schemas = json_schemas()
    assert len(schemas) == len(REGISTRY)
    assert schemas["job.status.v1"]["properties"]["status"]["enum"][0] == "ACCEPTED"


def test_published_schemas_are_current() -> None:
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "docs" / "schemas"
    for name, schema in json_schemas().items():
        path = folder / f"{name}.json"
        assert path.exists(), f"{path} missing: run `make schema`"
        assert json.loads(path.read_text()) == schema, f"{path} is stale: run `make schema`"
