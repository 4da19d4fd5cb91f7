"""The poller publishes changes only, and maps IBM jobs to this system's ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from qjt.contracts import BackendCalibration, BackendConfiguration, BackendStatus, QubitCalibration
from services.poller.handlers import BackendMemory, JobTracker, SeenJob, job_id_for

T0 = datetime(2026, 11, 6, 8, tzinfo=UTC)


def seen(ibm_id: str, status: str, tags: tuple[str, ...] = ()) -> SeenJob:
    return SeenJob(ibm_id, "ibm_kyiv", status, T0, tags, "sampler")


def test_backend_status_is_published_only_when_it_changes() -> None:
    memory = BackendMemory()
    first = BackendStatus(backend="ibm_kyiv", operational=True, pending_jobs=4, observed_at=T0)
    same = first.model_copy(update={"observed_at": T0 + timedelta(seconds=5)})
    longer = BackendStatus(backend="ibm_kyiv", operational=True, pending_jobs=5, observed_at=T0)
    assert memory.status_changed(first) is True
    assert memory.status_changed(same) is False
    assert memory.status_changed(longer) is True


def test_calibration_and_configuration_are_published_when_new() -> None:
    memory = BackendMemory()
    calibration = BackendCalibration(
        backend="b", calibrated_at=T0, qubits=[QubitCalibration(qubit=0)]
    )
    assert memory.calibration_changed(calibration) is True
    assert memory.calibration_changed(calibration) is False
    later = calibration.model_copy(update={"calibrated_at": T0 + timedelta(hours=1)})
    assert memory.calibration_changed(later) is True
    config = BackendConfiguration(backend="b", num_qubits=5, basis_gates=["x"], max_shots=100)
    assert memory.config_changed(config) is True and memory.config_changed(config) is False
    assert memory.config_changed(config.model_copy(update={"max_shots": 200})) is True


def test_job_status_events_only_on_change_with_the_given_times() -> None:
    tracker = JobTracker("user-a", "crn:x")
    first = tracker.observe([seen("i1", "QUEUED")], {})
    assert [(e.job_id, e.status, e.status_at) for e in first] == [("i1", "QUEUED", T0)]
    assert tracker.observe([seen("i1", "QUEUED")], {}) == []
    running = tracker.observe([seen("i1", "RUNNING")], {"i1": T0 + timedelta(minutes=3)})
    assert [(e.status, e.status_at) for e in running] == [("RUNNING", T0 + timedelta(minutes=3))]
    assert running[0].user_id == "user-a" and running[0].instance == "crn:x"


def test_jobs_that_leave_the_pending_list_are_looked_up_once() -> None:
    tracker = JobTracker("user-a", "crn:x")
    tracker.observe([seen("i1", "QUEUED"), seen("i2", "RUNNING")], {})
    assert [j.ibm_job_id for j in tracker.left_pending({"i2"})] == ["i1"]
    tracker.observe([seen("i1", "DONE")], {})
    tracker.forget_final(0.0)
    assert set(tracker.known) == {"i2"}


def test_jobs_submitted_here_keep_their_id_others_use_ibms() -> None:
    assert job_id_for("ibm-123", ["user:abc", "qjt-job:7f3c"]) == "7f3c"
    assert job_id_for("ibm-123", ["team-x"]) == "ibm-123"


def test_a_submitted_job_that_ends_before_any_poll_is_still_looked_up_once() -> None:
    tracker = JobTracker("user-a", "crn:x")
    tracker.expect(seen("i9", "INITIALIZING"))
    # Never in the pending list: it left pending, so its final state is fetched.
    assert [j.ibm_job_id for j in tracker.left_pending(set())] == ["i9"]
    tracker.observe([seen("i9", "DONE")], {})
    tracker.forget_final(100.0)
    assert tracker.known == {}
    # Sweeps of recently finished jobs skip it from now on; other finished jobs are new.
    assert [j.ibm_job_id for j in tracker.unfinished([seen("i9", "DONE"), seen("e1", "DONE")])] == [
        "e1"
    ]
    tracker.expect(seen("i9", "INITIALIZING"))  # a late duplicate event changes nothing
    assert tracker.known == {}
    tracker.forget_final(100.0 + 7200)
    assert tracker.finished == {}


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    from services.poller.ibm import parse_retry_after

    now = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 25 Nov 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Wed, 25 Nov 2026 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
