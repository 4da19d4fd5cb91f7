"""The submitter's IBM adapter with the real client against the emulator."""

from __future__ import annotations

import uuid

import pytest

from qjt.contracts import SubmitJob
from qjt.demo import BELL_QASM
from qjt.ibm import runtime_service
from services.emulator.accounts import crn_for
from services.submitter.ibm import Credential, IbmRuntime, NotRunnable
from tests.conftest import EmulatorProcess, make_settings

pytestmark = pytest.mark.e2e
DEMO_KEY = "qjt-emulator-demo-key"
PREMIUM = crn_for("a1b2c3demo", "0002-premium", private=True)
CREDENTIAL = Credential(1, "ibm_quantum_platform", PREMIUM, DEMO_KEY)


def submit(emulator: EmulatorProcess, backend: str, circuit: str = BELL_QASM) -> str:
    runtime = IbmRuntime(make_settings(ibm_url=emulator.url))
    command = SubmitJob(
        job_id=uuid.uuid4().hex, user_id="u1", primitive="sampler", circuits=[circuit],
        backend=backend, instance=PREMIUM, shots=400,
    )  # fmt: skip
    return runtime.submit(CREDENTIAL, command).ibm_job_id


def chain_both_ways(width: int) -> str:
    """H, then CX down a chain of `width` qubits and back up it."""
    lines = ["OPENQASM 2.0;", 'include "qelib1.inc";', f"qreg q[{width}];",
             f"creg c[{width}];", "h q[0];"]  # fmt: skip
    lines += [f"cx q[{i}],q[{i + 1}];" for i in range(width - 1)]
    lines += [f"cx q[{i + 1}],q[{i}];" for i in reversed(range(width - 1))]
    return "\n".join([*lines, "measure q -> c;", ""])


def test_every_qubit_of_a_backend_with_one_way_cx_is_usable(emulator: EmulatorProcess) -> None:
    # alt_cairo has CX one way only on 12 pairs (ECR on the rest) and no H gate. A circuit
    # over its 26 connected qubits, CX both ways, needs some of those CX turned round, which
    # Qiskit's basis translator cannot do there: the submitter synthesises it instead, and
    # the client's own check that the circuits suit the backend passes.
    ibm_job_id = submit(emulator, "alt_cairo", chain_both_ways(26))
    service = runtime_service(DEMO_KEY, instance=PREMIUM, ibm_url=emulator.url)
    assert service.job(ibm_job_id).backend().name == "alt_cairo"


def test_a_bell_job_there_runs_and_gives_bell_counts(emulator: EmulatorProcess) -> None:
    ibm_job_id = submit(emulator, "alt_cairo")
    service = runtime_service(DEMO_KEY, instance=PREMIUM, ibm_url=emulator.url)
    counts = service.job(ibm_job_id).result(timeout=120)[0].data.c.get_counts()
    assert sum(counts.values()) == 400
    assert counts.get("00", 0) + counts.get("11", 0) > 0.8 * 400, counts


def test_a_circuit_that_cannot_be_transpiled_is_not_runnable_and_never_sent(
    emulator: EmulatorProcess,
) -> None:
    wide = (
        'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[30];\ncreg c[30];\nh q[29];\n'
        "measure q -> c;\n"
    )
    service = runtime_service(DEMO_KEY, instance=PREMIUM, ibm_url=emulator.url)
    before = len(service.jobs(backend_name="alt_cairo", limit=100))
    with pytest.raises(NotRunnable, match="cannot transpile"):
        submit(emulator, "alt_cairo", wide)  # 30 qubits for a 27-qubit device
    assert len(service.jobs(backend_name="alt_cairo", limit=100)) == before
