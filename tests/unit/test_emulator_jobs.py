"""An emulated job's status follows its queue slot and its Aer result."""

from __future__ import annotations

from datetime import UTC, datetime

from services.emulator.devices import Clock
from services.emulator.jobs import Job, JobIndex
from services.emulator.queues import BackendQueue

T0 = datetime(2026, 11, 2, 3, tzinfo=UTC).timestamp()
REAL_TIME = Clock(1.0)  # emulated seconds are shown as they are


def make_job(
    queue: BackendQueue, job_id: str = "j1", service_s: float = 60.0, at: float = T0
) -> Job:
    item = queue.submit(job_id, service_s, at)
    return Job(
        id=job_id,
        account_id="acct",
        instance="crn",
        backend="ibm_kyiv",
        program_id="sampler",
        params_json="{}",
        tags=[],
        created_s=at,
        queue=queue,
        item=item,
        num_pubs=1,
    )


def empty_queue() -> BackendQueue:
    queue = BackendQueue("ibm_kyiv", 1, T0)
    queue.base_rate = 0.0  # no other users: the job starts at once
    queue._next_arrival_s = float("inf")
    return queue


def test_status_follows_the_queue_slot_and_waits_for_the_result() -> None:
    job = make_job(empty_queue())
    assert job.state(T0 + 30)[0] == "RUNNING"
    assert job.state(T0 + 61)[0] == "RUNNING"  # slot over, Aer not done yet
    job.result_json, job.ready_s = "{}", T0 + 90
    assert job.state(T0 + 91) == ("DONE", None)
    stamps = job.metrics(T0 + 91, REAL_TIME)["timestamps"]
    assert stamps["created"] <= stamps["running"] <= stamps["finished"]
    assert job.summary(T0 + 91, REAL_TIME)["state"]["status"] == "Completed"
    assert job.quantum_seconds(T0 + 91) == 60.0


def test_cancelling_a_running_job_stops_it_and_frees_the_backend() -> None:
    queue = empty_queue()
    running = make_job(queue, "running")
    waiting = make_job(queue, "waiting", service_s=10.0)
    assert running.state(T0 + 20)[0] == "RUNNING" and waiting.state(T0 + 20)[0] == "QUEUED"

    queue.cancel(running.item, T0 + 20)
    running.cancelled_s = T0 + 20

    assert running.state(T0 + 21)[0] == "CANCELLED"
    assert running.summary(T0 + 21, REAL_TIME)["state"]["status"] == "Cancelled"
    assert running.quantum_seconds(T0 + 21) == 20.0  # billed until it was stopped
    assert waiting.item.start_s == T0 + 20  # the next job starts at once


def test_failed_execution_reports_the_reason() -> None:
    job = make_job(empty_queue())
    job.error, job.ready_s = "circuit uses 25 active qubits", T0 + 5
    status, reason = job.state(T0 + 61)
    assert status == "ERROR" and reason == "circuit uses 25 active qubits"
    assert job.summary(T0 + 61, REAL_TIME)["state"]["reason"] == reason


def test_index_pages_by_creation_time_and_range() -> None:
    queue = empty_queue()
    index = JobIndex()
    jobs = [make_job(queue, f"j{n}", at=T0 + n) for n in (5, 1, 3, 2, 4)]
    for job in jobs:
        index.add(job)
    assert [j.id for j in index.jobs] == ["j1", "j2", "j3", "j4", "j5"]
    assert [j.id for j in index.between(T0 + 2, T0 + 4)] == ["j2", "j3", "j4"]
    index.remove(jobs[0])
    assert [j.id for j in index.jobs] == ["j1", "j2", "j3", "j4"]


def test_times_are_shown_on_the_wall_clock_however_fast_the_emulation_runs() -> None:
    start = datetime(2026, 11, 2, 3, tzinfo=UTC)
    clock = Clock(60.0, start=start)
    job = make_job(empty_queue(), at=T0 + 600)  # ten emulated minutes after start-up
    job.result_json, job.ready_s = "{}", T0 + 700
    stamps = job.metrics(T0 + 900, clock)["timestamps"]
    # Ten emulated minutes are ten real seconds at 60x; Aer is done 100 emulated s in.
    assert stamps == {"created": "2026-11-02T03:00:10Z", "running": "2026-11-02T03:00:10Z",
                      "finished": "2026-11-02T03:00:11.666667Z"}  # fmt: skip
    assert job.summary(T0 + 900, clock)["created"] == "2026-11-02T03:00:10Z"
    assert clock.emulated(datetime(2026, 11, 2, 3, 0, 10, tzinfo=UTC)).timestamp() == T0 + 600
