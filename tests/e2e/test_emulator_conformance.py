"""The unmodified qiskit-ibm-runtime client against the emulator, public API only."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp
from qiskit.transpiler import generate_preset_pass_manager
from qiskit_ibm_runtime import EstimatorV2, IBMBackend, QiskitRuntimeService, SamplerV2
from qiskit_ibm_runtime.accounts import InvalidAccountError
from qiskit_ibm_runtime.exceptions import (
    IBMError,
    IBMInputValueError,
    RuntimeJobFailureError,
)

from qjt.demo import bell_circuit
from qjt.ibm import runtime_service
from services.emulator.accounts import DEMO_ACCOUNTS, crn_for
from tests.conftest import EmulatorProcess

pytestmark = pytest.mark.e2e

DEMO_KEY = "qjt-emulator-demo-key"
SECOND_KEY = "qjt-emulator-second-key"
OPEN = crn_for("a1b2c3demo", "0001-open", private=False)
PREMIUM = crn_for("a1b2c3demo", "0002-premium", private=True)
TEAM = crn_for("d4e5f6second", "0003-team", private=False)


@pytest.fixture(scope="module")
def service(emulator: EmulatorProcess) -> QiskitRuntimeService:
    return runtime_service(DEMO_KEY, instance=OPEN, ibm_url=emulator.url)


@pytest.fixture
def faults(emulator: EmulatorProcess) -> Iterator[EmulatorProcess]:
    yield emulator
    emulator.set_faults()  # back to none


def bell(backend: IBMBackend, measure: bool = True) -> QuantumCircuit:
    return bell_circuit(backend, measure=measure)


def test_each_instance_lists_its_own_backends(emulator: EmulatorProcess) -> None:
    open_names = {
        b.name for b in runtime_service(DEMO_KEY, instance=OPEN, ibm_url=emulator.url).backends()
    }
    premium = {
        b.name for b in runtime_service(DEMO_KEY, instance=PREMIUM, ibm_url=emulator.url).backends()
    }
    team = {
        b.name for b in runtime_service(SECOND_KEY, instance=TEAM, ibm_url=emulator.url).backends()
    }

    demo_instances = DEMO_ACCOUNTS["accounts"][0]["instances"]
    assert open_names == set(demo_instances[0]["backends"])
    assert len(premium) >= 60 and open_names < premium  # every fake backend
    assert team == set(DEMO_ACCOUNTS["accounts"][1]["instances"][0]["backends"])


def test_instances_are_discovered_with_plans_public_and_private(emulator: EmulatorProcess) -> None:
    service = runtime_service(DEMO_KEY, ibm_url=emulator.url)
    found = {i["crn"]: i for i in service.instances()}
    assert set(found) == {OPEN, PREMIUM}
    assert found[OPEN]["plan"] == "open" and found[OPEN]["pricing_type"] == "free"
    assert found[PREMIUM]["plan"] == "premium" and ":private:" in PREMIUM


@pytest.fixture(scope="module")
def realtime() -> Iterator[EmulatorProcess]:
    """A real-time emulator: at the shared one's speed-up, queues move too much between calls."""
    process = EmulatorProcess(speedup=1.0)
    yield process
    process.stop()


def test_least_busy_is_an_operational_backend_with_the_shortest_queue(
    realtime: EmulatorProcess,
) -> None:
    service = runtime_service(DEMO_KEY, instance=OPEN, ibm_url=realtime.url)
    candidates = service.backends(min_num_qubits=5, operational=True)
    before = {b.name: b.status().pending_jobs for b in candidates}
    chosen = service.least_busy(min_num_qubits=5)
    after = {b.name: b.status().pending_jobs for b in candidates}
    assert chosen.name in before and chosen.num_qubits >= 5
    # No backend's queue was shorter than the chosen one's at both moments.
    shortest_either_way = min(max(before[name], after[name]) for name in before)
    assert min(before[chosen.name], after[chosen.name]) <= shortest_either_way


def test_calibration_drifts_and_past_snapshots_stay_available(
    service: QiskitRuntimeService,
) -> None:
    backend = service.backend("ibm_kyiv")
    now = backend.properties()
    past = backend.properties(datetime=datetime.now(UTC) - timedelta(hours=3))
    again = backend.properties(datetime=datetime.now(UTC) - timedelta(hours=3))

    assert past.last_update_date < now.last_update_date
    assert [past.t1(q) for q in range(10)] != [now.t1(q) for q in range(10)]
    assert [past.t1(q) for q in range(10)] == [again.t1(q) for q in range(10)]
    assert all(0 < now.readout_error(q) <= 0.5 for q in range(backend.num_qubits))


def test_sampler_bell_counts_are_near_50_50_with_noise(service: QiskitRuntimeService) -> None:
    backend = service.backend("ibm_kyiv")
    job = SamplerV2(mode=backend).run([bell(backend)], shots=4000)
    counts = job.result(timeout=120)[0].data.meas.get_counts()

    assert sum(counts.values()) == 4000
    correlated = counts.get("00", 0) + counts.get("11", 0)
    assert 0.85 < correlated / 4000 < 1.0, counts  # noisy: some 01/10
    assert abs(counts.get("00", 0) - counts.get("11", 0)) / 4000 < 0.1, counts


def test_estimator_zz_on_a_bell_state_is_near_one(service: QiskitRuntimeService) -> None:
    backend = service.backend("ibm_kyiv")
    circuit = bell(backend, measure=False)
    observable = SparsePauliOp("ZZ").apply_layout(circuit.layout)
    data = EstimatorV2(mode=backend).run([(circuit, observable)]).result(timeout=120)[0].data
    # Like IBM's, the estimate carries the default precision's sampling error (1/64).
    assert float(data.stds) == pytest.approx(1 / 64)
    assert 0.85 < float(data.evs) < 1.0 + 4 / 64


def test_job_metrics_timestamps_are_ordered(service: QiskitRuntimeService) -> None:
    backend = service.backend("ibmq_manila")
    job = SamplerV2(mode=backend).run([bell(backend)], shots=100)
    job.wait_for_final_state(timeout=120)
    stamps = job.metrics()["timestamps"]

    assert job.status() == "DONE"
    created, running, finished = (
        datetime.fromisoformat(stamps[k]) for k in ("created", "running", "finished")
    )
    assert created <= running <= finished
    assert job.metrics()["usage"]["quantum_seconds"] > 0
    usage = service.usage()
    assert usage["usage_limit_seconds"] == 600 and 0 < usage["usage_consumed_seconds"] < 600
    assert usage["usage_remaining_seconds"] == 600 - usage["usage_consumed_seconds"]


def test_cancelling_a_queued_job(realtime: EmulatorProcess) -> None:
    service = runtime_service(DEMO_KEY, instance=OPEN, ibm_url=realtime.url)
    backend = service.backend("ibm_kyiv")
    # A held queue starts nothing, so the job is queued whatever the hour's load: a busy
    # queue at one moment can be empty the next (it was, at 01:00 UTC).
    realtime.set_faults(hold_backends=[backend.name])
    try:
        job = SamplerV2(mode=backend).run([bell(backend)], shots=100)
        assert job.status() == "QUEUED"
        assert backend.status().pending_jobs >= 1  # our job, at least
        job.cancel()
        assert job.status() == "CANCELLED"
        with pytest.raises(Exception, match="cancelled"):
            job.result()
    finally:
        realtime.set_faults()


def test_jobs_filters_backend_pending_tags_created_after_limit_skip(
    service: QiskitRuntimeService,
) -> None:
    start = datetime.now(UTC)
    kyiv = service.backend("ibm_kyiv")
    lima = service.backend("ibmq_lima")
    tag = f"run-{time.time_ns()}"
    jobs = [
        SamplerV2(mode=b, options={"environment": {"job_tags": [tag]}}).run([bell(b)], shots=50)
        for b in (kyiv, kyiv, lima)
    ]
    for job in jobs:
        job.wait_for_final_state(timeout=120)
    ids = {j.job_id() for j in jobs}

    tagged = service.jobs(job_tags=[tag], limit=10)
    assert {j.job_id() for j in tagged} == ids
    assert {j.job_id() for j in service.jobs(job_tags=[tag], backend_name="ibm_kyiv")} == {
        jobs[0].job_id(),
        jobs[1].job_id(),
    }
    assert service.jobs(job_tags=[tag], pending=True) == []
    assert {j.job_id() for j in service.jobs(job_tags=[tag], pending=False)} == ids
    created_after = service.jobs(created_after=start - timedelta(seconds=1), limit=100)
    assert ids <= {j.job_id() for j in created_after}
    first_two = service.jobs(job_tags=[tag], limit=2)
    rest = service.jobs(job_tags=[tag], limit=2, skip=2)
    assert len(first_two) == 2 and len(rest) == 1
    assert {j.job_id() for j in first_two + rest} == ids
    jobs[2].update_tags([tag, "checked"])
    assert [j.job_id() for j in service.jobs(job_tags=["checked", tag])] == [jobs[2].job_id()]


def test_wrong_key_gets_the_clients_invalid_account_error(emulator: EmulatorProcess) -> None:
    with pytest.raises(InvalidAccountError, match="Unable to retrieve instances"):
        runtime_service("not-a-key", ibm_url=emulator.url)


def test_wrong_instance_gets_the_clients_error(emulator: EmulatorProcess) -> None:
    with pytest.raises(IBMInputValueError, match="does not have access to the instance"):
        runtime_service(SECOND_KEY, instance=OPEN, ibm_url=emulator.url)


def test_injected_503s_are_retried_by_the_client(
    service: QiskitRuntimeService, faults: EmulatorProcess
) -> None:
    backend = service.backend("ibm_kyiv")
    faults.set_faults(rate_503=0.3)
    statuses = [backend.status() for _ in range(10)]
    assert all(s.backend_name == "ibm_kyiv" for s in statuses)


def test_constant_503_ends_in_the_clients_error(
    service: QiskitRuntimeService, faults: EmulatorProcess
) -> None:
    backend = service.backend("ibm_kyiv")
    circuit = bell(backend)
    faults.set_faults(rate_503=1.0)
    with pytest.raises(IBMError, match="503"):  # after the client's own retries
        SamplerV2(mode=backend).run([circuit], shots=10)


def test_injected_429_reaches_the_caller_with_its_status(
    service: QiskitRuntimeService, faults: EmulatorProcess
) -> None:
    backend = service.backend("ibm_kyiv")
    faults.set_faults(rate_429=1.0)
    with pytest.raises(Exception, match="429"):
        backend.status()


def test_dropped_connection_is_reported_by_the_client_and_recovers(
    service: QiskitRuntimeService, faults: EmulatorProcess
) -> None:
    backend = service.backend("ibm_kyiv")
    faults.set_faults(rate_drop=1.0)
    # The client does not retry a response cut mid-body; callers (the poller) must.
    with pytest.raises(IBMError, match="IncompleteRead"):
        backend.status()
    faults.set_faults()
    assert backend.status().backend_name == "ibm_kyiv"


def test_faults_can_be_configured_at_start_up() -> None:
    configured = EmulatorProcess(env={"QJT_EMULATOR_FAULTS": '{"rate_503": 1.0, "latency_ms": 5}'})
    try:
        faults = httpx.get(f"{configured.url}/admin/faults", timeout=5).json()
        assert faults["rate_503"] == 1.0 and faults["latency_ms"] == 5
        response = httpx.get(f"{configured.url}/api/v1/backends", timeout=5)
        assert response.status_code == 503
    finally:
        configured.stop()


def test_injected_job_failure_gives_the_reason(
    service: QiskitRuntimeService, faults: EmulatorProcess
) -> None:
    backend = service.backend("ibmq_manila")
    faults.set_faults(job_error_rate=1.0)
    job = SamplerV2(mode=backend).run([bell(backend)], shots=10)
    faults.set_faults()
    with pytest.raises(RuntimeJobFailureError, match="Injected failure"):
        job.result(timeout=120)
    assert job.status() == "ERROR"


def test_circuit_too_large_to_simulate_fails_like_an_ibm_job(service: QiskitRuntimeService) -> None:
    backend = service.backend("ibm_kyiv")
    wide = QuantumCircuit(24)
    wide.h(0)
    for q in range(23):
        wide.cx(q, q + 1)
    wide.measure_all()
    isa = generate_preset_pass_manager(optimization_level=0, backend=backend).run(wide)
    job = SamplerV2(mode=backend).run([isa], shots=10)
    with pytest.raises(RuntimeJobFailureError, match="simulates at most 20 qubits"):
        job.result(timeout=120)
