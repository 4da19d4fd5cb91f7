"""Recommender: does its ESP ranking match measured fidelity, and how fast does it answer?

1. Ranking quality. 24 circuits of 2–12 qubits (mirror circuits U·U† of random layers,
   GHZ, Bernstein–Vazirani: each has one or two ideal outcomes, so the Hellinger fidelity
   to the ideal distribution is the success probability). For each, on 12 emulated
   backends of different generations at one moment: the recommender places the circuit
   (`esp.place`) and estimates its success probability; the placed circuit then runs on
   Aer with the emulator's own noise model for that backend and calibration snapshot
   (density matrix, so no shot noise, up to 10 active qubits; 4,000 shots above), and its
   Hellinger fidelity to the ideal distribution is measured. Per circuit: Spearman rank
   correlation between ESP and measured fidelity over the backends, and the same for the
   seed formula's score (with each backend's pending jobs from the emulator's queue).
   Target: ≥ 0.8.
2. Latency. The recommender service (its own process, two transpiling workers) over real
   NATS and PostgreSQL holding every emulated backend's configuration, calibration and
   status; top-3 requests for 20-qubit circuits over all eligible backends (every backend
   with ≥ 20 qubits). Cold: a circuit it has not seen (the calibration already loaded);
   warm: the same circuit again. Also the very first request after start-up.
   Targets: p95 < 1 s warm, < 5 s cold.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from qiskit import QuantumCircuit, qasm2
from qiskit.quantum_info import Statevector, hellinger_fidelity
from qiskit_aer import AerSimulator
from scipy.stats import spearmanr

from bench.fleet import EmulatedBackend, fleet, store_fleet
from qjt.bus import Bus
from qjt.config import Settings
from qjt.contracts import RecommendReply, RecommendRequest
from qjt.db import create_database, drop_database, migrate, open_pool, with_database
from qjt.devstack import NatsServer, free_port, postgres_server_url, stop_process
from services.emulator.execution import active_qubits, compact, noise_model
from services.emulator.queues import queue_for
from services.recommender.esp import DeviceCalibration, NotSchedulable, ghz_qasm, place
from services.recommender.handlers import BackendState, seed_score

SEED = 11
MOMENT = datetime(2026, 11, 20, 14, tzinfo=UTC)
BACKENDS = [
    "ibm_fez", "ibm_torino", "ibm_brisbane", "ibm_kyiv", "ibm_sherbrooke", "ibm_osaka",
    "ibmq_kolkata", "ibmq_mumbai", "ibm_hanoi", "ibmq_montreal", "ibmq_guadalupe",
    "ibmq_16_melbourne",
]  # fmt: skip
DENSITY_MATRIX_MAX = 10
SHOTS = 4_000
COLD_CIRCUITS = 10
WARM_REPEATS = 5


def mirror(n: int, layers: int, seed: int) -> QuantumCircuit:
    """Random layers U, a barrier, then U†: ideal outcome all zeros."""
    rng = np.random.default_rng(seed)
    u = QuantumCircuit(n)
    for _ in range(layers):
        for q in range(n):
            u.rx(float(rng.uniform(0, 3)), q)
            u.rz(float(rng.uniform(0, 3)), q)
        order = rng.permutation(n)
        for a, b in zip(order[::2], order[1::2], strict=False):
            u.cx(int(a), int(b))
    circuit = u.copy()
    circuit.barrier()
    circuit.compose(u.inverse(), inplace=True)
    circuit.measure_all()
    return circuit


def bernstein_vazirani(secret: str) -> QuantumCircuit:
    """Ideal outcome: the secret."""
    n = len(secret)
    circuit = QuantumCircuit(n + 1, n)
    circuit.x(n)
    circuit.h(range(n + 1))
    for i, bit in enumerate(reversed(secret)):
        if bit == "1":
            circuit.cx(i, n)
    circuit.h(range(n))
    circuit.measure(range(n), range(n))
    return circuit


def circuits() -> list[tuple[str, QuantumCircuit]]:
    out = [(f"mirror{n}x{layers}", mirror(n, layers, 100 + n * 10 + layers))
           for n, layers in [(2, 3), (3, 2), (3, 4), (4, 2), (4, 3), (5, 2), (5, 3), (6, 2),
                             (6, 3), (7, 2), (8, 2), (9, 1), (10, 1), (12, 1)]]  # fmt: skip
    out += [(f"ghz{n}", QuantumCircuit.from_qasm_str(ghz_qasm(n))) for n in (3, 5, 7, 9, 12)]
    out += [(f"bv{len(s)}", bernstein_vazirani(s))
            for s in ("101", "1101", "10110", "110101", "1011011")]  # fmt: skip
    return out


def ideal(circuit: QuantumCircuit) -> dict[str, float]:
    """Ideal outcome distribution over the classical register (measurements at the end)."""
    unmeasured = circuit.remove_final_measurements(inplace=False)
    probs = Statevector(unmeasured).probabilities_dict()
    measured = {}
    for instruction in circuit.data:
        if instruction.operation.name == "measure":
            q = circuit.find_bit(instruction.qubits[0]).index
            c = circuit.find_bit(instruction.clbits[0]).index
            measured[c] = q
    width = circuit.num_clbits
    out: dict[str, float] = {}
    for bits, p in probs.items():
        key = "".join(bits[::-1][measured[c]] for c in reversed(range(width)))
        out[key] = out.get(key, 0.0) + p
    return {k: v for k, v in out.items() if v > 1e-9}


def measured_fidelity(
    placed: QuantumCircuit, backend: EmulatedBackend, ideal_counts: dict[str, float]
) -> float:
    """Hellinger fidelity of the placed circuit on Aer with the emulator's noise for it."""
    qubits = active_qubits(placed)
    small = compact(placed, qubits)
    basis = list(backend.device.configuration["basis_gates"])
    model = noise_model(backend.config.backend, backend.properties, basis, qubits)
    method = "density_matrix" if len(qubits) <= DENSITY_MATRIX_MAX else "statevector"
    sim = AerSimulator(method=method, noise_model=model, seed_simulator=1)
    if method == "density_matrix":
        unmeasured = small.remove_final_measurements(inplace=False)
        unmeasured.save_density_matrix()
        # Readout error acts on the outcome probabilities; apply it exactly.
        rho = sim.run(unmeasured).result().data()["density_matrix"]
        probs = np.real(np.diag(np.asarray(rho)))
        counts = _with_readout(probs, small, backend, qubits)
    else:
        counts = sim.run(small, shots=SHOTS).result().get_counts()
    return float(hellinger_fidelity(counts, ideal_counts))


def _with_readout(
    probs: np.ndarray, small: QuantumCircuit, backend: EmulatedBackend, qubits: list[int]
) -> dict[str, float]:
    """Outcome distribution over classical bits after each qubit's readout error."""
    n = len(qubits)
    tensor = probs.reshape([2] * n)  # axes: qubit n-1 … qubit 0
    for local, q in enumerate(qubits):
        params = {p["name"]: float(p["value"]) for p in backend.properties["qubits"][q]}
        p01 = params.get("prob_meas0_prep1", params.get("readout_error", 0.0))
        p10 = params.get("prob_meas1_prep0", params.get("readout_error", 0.0))
        confusion = np.array([[1 - p10, p01], [p10, 1 - p01]])  # [measured, prepared]
        axis = n - 1 - local
        tensor = np.moveaxis(np.tensordot(confusion, tensor, axes=([1], [axis])), 0, axis)
    flat = tensor.reshape(-1)
    clbit_of = {}
    for instruction in small.data:
        if instruction.operation.name == "measure":
            clbit_of[small.find_bit(instruction.qubits[0]).index] = small.find_bit(
                instruction.clbits[0]
            ).index
    width = small.num_clbits
    out: dict[str, float] = {}
    for index, p in enumerate(flat):
        if p < 1e-12:
            continue
        bits = ["0"] * width
        for local, clbit in clbit_of.items():
            bits[width - 1 - clbit] = "1" if (index >> local) & 1 else "0"
        key = "".join(bits)
        out[key] = out.get(key, 0.0) + float(p)
    return out


def ranking_quality() -> dict[str, Any]:
    backends = fleet(SEED, MOMENT, names=BACKENDS)
    devices = {b.config.backend: DeviceCalibration.from_events(b.config, b.calibration)
               for b in backends}  # fmt: skip
    pending = {b.config.backend: queue_for(b.device, MOMENT.timestamp() - 86_400).pending(
        MOMENT.timestamp()) for b in backends}  # fmt: skip
    rows = []
    for name, circuit in circuits():
        target_counts = ideal(circuit)
        esp, fidelity, seed = [], [], []
        for b in backends:
            if b.config.num_qubits < circuit.num_qubits:
                continue
            try:
                placed, score = place(qasm2.dumps(circuit), devices[b.config.backend])
            except NotSchedulable:
                continue
            esp.append(score.esp)
            fidelity.append(measured_fidelity(placed, b, target_counts))
            state = BackendState(
                b.config.backend, True, pending[b.config.backend], b.config.num_qubits
            )
            seed.append(seed_score(state))
        rho_esp = float(spearmanr(esp, fidelity).statistic)
        rho_seed = float(spearmanr(seed, fidelity).statistic)
        rows.append({"circuit": name, "qubits": circuit.num_qubits, "backends": len(esp),
                     "spearman_esp": rho_esp, "spearman_seed": rho_seed,
                     "fidelity_range": [min(fidelity), max(fidelity)]})  # fmt: skip
        print(
            f"  {name:>12}: {len(esp)} backends, Spearman ESP {rho_esp:+.2f}, seed "
            f"{rho_seed:+.2f}, fidelity {min(fidelity):.2f}–{max(fidelity):.2f}",
            flush=True,
        )
    return {
        "circuits": rows,
        "mean_spearman_esp": float(np.nanmean([r["spearman_esp"] for r in rows])),
        "median_spearman_esp": float(np.nanmedian([r["spearman_esp"] for r in rows])),
        "mean_spearman_seed": float(np.nanmean([r["spearman_seed"] for r in rows])),
    }


def start_recommender(nats_url: str, database: str) -> subprocess.Popen[bytes]:
    port = free_port()
    env = {**os.environ, "QJT_NATS_URL": nats_url, "QJT_DATABASE_URL": database,
           "QJT_HTTP_PORT": str(port), "QJT_LOG_LEVEL": "WARNING",
           "QJT_RECOMMENDER_WORKERS": "2"}  # fmt: skip
    service = subprocess.Popen([sys.executable, "-m", "services.recommender"], env=env)
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return service
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or service.poll() is not None:
            stop_process(service, 5)
            raise RuntimeError("the recommender did not become healthy")
        time.sleep(0.2)


async def store(database: str, backends: list[EmulatedBackend]) -> None:
    pool = open_pool(database, 2)
    await pool.open()
    await store_fleet(pool, backends, MOMENT)
    await pool.close()


async def latency(nats_url: str, names: list[str]) -> dict[str, Any]:
    bus = await Bus.connect(Settings(nats_url=nats_url))

    async def ask(circuit: str) -> float:
        started = time.perf_counter()
        reply = await bus.request(
            RecommendRequest(request_id=uuid.uuid4().hex, user_id="bench", circuit=circuit,
                             backends=names, top_n=3),
            RecommendReply, timeout_s=60,
        )  # fmt: skip
        took = time.perf_counter() - started
        scored = [r for r in reply.recommendations if r.estimated_success_probability]
        assert len(scored) == 3, reply
        return took

    programs = [qasm2.dumps(mirror(20, 2, 900 + i)) for i in range(COLD_CIRCUITS)]
    first = await ask(ghz_qasm(20))
    cold = [await ask(p) for p in programs]
    warm = [await ask(p) for _ in range(WARM_REPEATS) for p in programs]
    await bus.close()
    return {
        "first_request_s": first,
        "cold_p50_s": float(np.percentile(cold, 50)),
        "cold_p95_s": float(np.percentile(cold, 95)),
        "warm_p50_s": float(np.percentile(warm, 50)),
        "warm_p95_s": float(np.percentile(warm, 95)),
    }


def main() -> None:
    print("Recommender: ESP ranking vs fidelity measured on noisy Aer", flush=True)
    quality = ranking_quality()
    print(
        f"  mean Spearman over {len(quality['circuits'])} circuits: ESP "
        f"{quality['mean_spearman_esp']:.3f} (median {quality['median_spearman_esp']:.3f}; "
        f"target ≥ 0.8), seed formula {quality['mean_spearman_seed']:.3f}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(database_url=os.environ.get("QJT_DATABASE_URL") or None)
        server, _origin, _keep = postgres_server_url(settings, Path(tmp) / "pg")
        database = with_database(server, f"qjt_bench_recommender_{uuid.uuid4().hex[:6]}")
        create_database(database)
        nats = NatsServer(Path(tmp) / "nats").start()
        try:
            migrate(database)
            backends = fleet(SEED, MOMENT)
            asyncio.run(store(database, backends))
            service = start_recommender(nats.url, database)
            try:
                names = [b.config.backend for b in backends]
                timing = asyncio.run(latency(nats.url, names))
            finally:
                stop_process(service, 20)
            timing["eligible_backends"] = sum(b.config.num_qubits >= 20 for b in backends)
        finally:
            nats.stop()
            drop_database(database)
    print(
        f"Recommender latency, top 3 for a 20-qubit circuit over {timing['eligible_backends']} "
        f"eligible backends (service process, 2 workers, NATS + PostgreSQL):\n"
        f"  first request after start-up {timing['first_request_s']:.2f} s; cold (new "
        f"circuit) p50 {timing['cold_p50_s']:.2f} s, p95 {timing['cold_p95_s']:.2f} s "
        f"(target < 5 s); warm p50 {timing['warm_p50_s'] * 1000:.0f} ms, p95 "
        f"{timing['warm_p95_s'] * 1000:.0f} ms (target < 1 s)"
    )
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "recommender.json").write_text(json.dumps({"quality": quality, "latency": timing},
                                                     indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
