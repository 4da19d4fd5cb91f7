"""The demo `qjt up` runs on the emulator: a Bell job tracked end to end.

It registers the emulator's demo account (as `qjt account add` would), runs a Sampler
job with the real qiskit-ibm-runtime client, and waits for the poller and recorder to
bring its lifecycle and counts into PostgreSQL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import psycopg
from qiskit import QuantumCircuit
from qiskit.transpiler import generate_preset_pass_manager
from qiskit_ibm_runtime import SamplerV2

from qjt.accounts import register
from qjt.config import Settings
from qjt.ibm import runtime_service
from qjt.vault import Vault

# The emulator's built-in demo account (services/emulator/accounts.py).
EMULATOR_DEMO_KEY = "qjt-emulator-demo-key"


def bell_circuit(backend: Any, *, measure: bool = True) -> QuantumCircuit:
    """A Bell-state circuit transpiled for `backend` (an ISA circuit, as IBM requires)."""
    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    if measure:
        circuit.measure_all()
    return generate_preset_pass_manager(optimization_level=1, backend=backend).run(circuit)


def run_demo(
    database_url: str,
    ibm_url: str,
    fernet_keys: str,
    say: Callable[[str], None],
    timeout_s: float = 180.0,
) -> bool:
    """Submit a Bell job and wait until the system has recorded it; True on success."""
    # The client's own handler prints account-loading notices; they are noise here.
    logging.getLogger("qiskit_ibm_runtime").setLevel(logging.ERROR)
    settings = Settings(ibm_url=ibm_url, database_url=database_url)
    vault = Vault([k.strip() for k in fernet_keys.split(",") if k.strip()])
    registration = register(
        database_url,
        vault,
        EMULATOR_DEMO_KEY,
        channel="ibm_quantum_platform",
        instances=None,
        settings=settings,
    )
    instance = registration.instances[0].crn
    service = runtime_service(EMULATOR_DEMO_KEY, instance=instance, ibm_url=ibm_url)
    backend = service.least_busy(min_num_qubits=2)
    job = SamplerV2(mode=backend).run([bell_circuit(backend)], shots=1000)
    say(
        f"Demo: Bell job {job.job_id()} submitted to {backend.name} "
        f"({backend.status().pending_jobs} jobs in its queue)"
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                "SELECT j.status, r.counts FROM jobs j JOIN job_results r ON r.job_id = j.id "
                "WHERE j.id = %s",
                (job.job_id(),),
            ).fetchone()
        if row and row[0] == "DONE":
            counts = dict(sorted(row[1][0].items(), key=lambda kv: -kv[1])[:4])
            say(
                f"Demo: job {job.job_id()} Completed, counts {counts} — recorded by "
                "poller → NATS → recorder → PostgreSQL"
            )
            return True
        time.sleep(1)
    say(f"Demo: job {job.job_id()} was not recorded within {timeout_s:.0f} s (see the logs)")
    return False
