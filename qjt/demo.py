"""The demo `qjt up` runs on the emulator: a Bell job through the API gateway.

It registers the emulator's demo account at `POST /v1/accounts` (the token is validated
by the real qiskit-ibm-runtime client), waits until the poller has listed the account's
backends, submits a Sampler Bell job with `backend: auto`, and follows it until the
submitter, IBM (the emulator), the poller and the recorder have brought it to Completed
with counts. The demo's API key is written to `<state dir>/demo-api-key` (mode 600),
never printed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from qiskit import QuantumCircuit
from qiskit.transpiler import generate_preset_pass_manager

# The emulator's built-in demo account (services/emulator/accounts.py).
EMULATOR_DEMO_KEY = "qjt-emulator-demo-key"

BELL_QASM = (
    'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\n'
    "h q[0];\ncx q[0],q[1];\nmeasure q -> c;\n"
)
# The same state without measurements, for the Estimator.
BELL_NO_MEASURE_QASM = (
    'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[2] q;\nh q[0];\ncx q[0], q[1];\n'
)


def bell_circuit(backend: Any, *, measure: bool = True) -> QuantumCircuit:
    """A Bell-state circuit transpiled for `backend` (an ISA circuit, as IBM requires)."""
    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    if measure:
        circuit.measure_all()
    return generate_preset_pass_manager(optimization_level=1, backend=backend).run(circuit)


def _wait(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1)
    raise TimeoutError(f"{what} did not happen within {timeout_s:.0f} s")


def run_demo(
    api_url: str, state_dir: Path, say: Callable[[str], None], timeout_s: float = 180.0
) -> bool:
    """Register, submit a Bell job through the API and wait for its counts; True on success."""
    with httpx.Client(base_url=api_url, timeout=30) as http:
        answer = http.post("/v1/accounts", json={"token": EMULATOR_DEMO_KEY, "key_name": "demo"})
        answer.raise_for_status()
        api_key = answer.json()["api_key"]
        key_file = state_dir / "demo-api-key"
        key_file.write_text(api_key + "\n")
        os.chmod(key_file, 0o600)
        http.headers["Authorization"] = f"Bearer {api_key}"
        say(f"Demo: registered the emulator's demo account; API key in {key_file}")
        _wait(
            lambda: [b for b in http.get("/v1/backends").json() if b["operational"]],
            timeout_s,
            "the poller listing the demo account's backends",
        )
        submitted = http.post(
            "/v1/jobs",
            json={
                "primitive": "sampler",
                "circuits": [BELL_QASM],
                "shots": 1000,
                "backend": "auto",
            },
        )
        submitted.raise_for_status()
        job_id, backend = submitted.json()["job_id"], submitted.json()["backend"]
        say(f"Demo: Bell job {job_id} submitted through the API to {backend} (backend=auto)")
        try:
            job = _wait(
                lambda: _finished(http.get(f"/v1/jobs/{job_id}").json()), timeout_s, "the job"
            )
        except TimeoutError:
            say(f"Demo: job {job_id} did not finish within {timeout_s:.0f} s (see the logs)")
            return False
    if job["status"] != "Completed" or not job["result"]:
        say(f"Demo: job {job_id} ended {job['status']}: {job['error']}")
        return False
    counts = job["result"]["sampler"][0]["counts"]
    top = dict(sorted(counts.items(), key=lambda kv: -kv[1])[:4])
    say(
        f"Demo: job {job_id} Completed, counts {top} — API → submitter → IBM (emulator) → "
        "poller → recorder → PostgreSQL → API"
    )
    return True


def _finished(job: dict[str, Any]) -> dict[str, Any] | None:
    if job.get("status") in ("Failed", "Cancelled"):
        return job
    if job.get("status") == "Completed" and job.get("result"):
        return job
    return None
