"""Running Sampler and Estimator v2 PUBs on Aer with the backend's noise, in a worker process.

A job's circuits are ISA circuits on the whole device (e.g. 127 qubits) but touch only a
few. Building `AerSimulator.from_backend` for the whole device costs seconds, so the
noise model is built for the active qubits only, from the calibration snapshot in force
when the job runs (gate errors as depolarizing plus thermal relaxation over each gate's
duration, readout errors from prob_meas0_prep1/prob_meas1_prep0), and cached per
snapshot. The circuit is compacted onto those qubits and simulated; the result is
encoded with the client's own `RuntimeEncoder`, so `job.result()` decodes it unchanged.
"""

from __future__ import annotations

import json
import zlib
from collections import OrderedDict
from typing import Any

import numpy as np
from qiskit import QuantumCircuit
from qiskit.primitives import PrimitiveResult
from qiskit.quantum_info import SparsePauliOp
from qiskit_aer.noise import NoiseModel, ReadoutError, depolarizing_error, thermal_relaxation_error
from qiskit_aer.primitives import EstimatorV2, SamplerV2
from qiskit_ibm_runtime.json import RuntimeDecoder, RuntimeEncoder

IGNORED_OPS = {"barrier", "delay"}
DEFAULT_SHOTS = 4096
# IBM's EstimatorV2 aims at this standard error when neither the job nor the PUB sets one.
DEFAULT_PRECISION = 1 / 4096**0.5
DENSITY_MATRIX_MAX_QUBITS = 10
_noise_cache: OrderedDict[tuple[str, str, tuple[int, ...]], NoiseModel] = OrderedDict()


class ExecutionError(Exception):
    """The job cannot run; the message is what IBM would report as the reason."""


def active_qubits(circuit: QuantumCircuit) -> list[int]:
    """Indices of qubits any operation other than a barrier or delay touches."""
    used: set[int] = set()
    for instruction in circuit.data:
        if instruction.operation.name in IGNORED_OPS:
            continue
        used.update(circuit.find_bit(q).index for q in instruction.qubits)
    return sorted(used)


def compact(circuit: QuantumCircuit, qubits: list[int]) -> QuantumCircuit:
    """The same circuit on len(qubits) qubits (classical bits and registers kept)."""
    position = {q: i for i, q in enumerate(qubits)}
    out = QuantumCircuit(max(len(qubits), 1), name=circuit.name)
    for creg in circuit.cregs:
        out.add_register(creg)
    for instruction in circuit.data:
        if instruction.operation.name in IGNORED_OPS:
            continue
        mapped = [out.qubits[position[circuit.find_bit(q).index]] for q in instruction.qubits]
        clbits = [out.clbits[circuit.find_bit(c).index] for c in instruction.clbits]
        out.append(instruction.operation, mapped, clbits)
    return out


def _qubit_params(props: dict[str, Any], qubit: int) -> dict[str, float]:
    return {p["name"]: float(p["value"]) for p in props["qubits"][qubit]}


def noise_model(
    backend: str, props: dict[str, Any], basis_gates: list[str], qubits: list[int]
) -> NoiseModel:
    """Noise on `qubits` (renumbered 0..k-1) from one calibration snapshot."""
    key = (backend, str(props["last_update_date"]), tuple(qubits))
    if key in _noise_cache:
        _noise_cache.move_to_end(key)
        return _noise_cache[key]
    position = {q: i for i, q in enumerate(qubits)}
    params = {q: _qubit_params(props, q) for q in qubits}
    model = NoiseModel(basis_gates=basis_gates)
    for gate in props["gates"]:
        gate_qubits = list(gate["qubits"])
        if not all(q in position for q in gate_qubits) or gate["gate"] in ("reset",):
            continue
        values = {p["name"]: float(p["value"]) for p in gate["parameters"]}
        error_rate = values.get("gate_error", 0.0)
        duration_ns = values.get("gate_length", 0.0)
        if error_rate <= 0 and duration_ns <= 0:
            continue
        n = len(gate_qubits)
        dim = 2**n
        depolarizing = min(error_rate * dim / (dim - 1), 4**n / (4**n - 1))
        error = depolarizing_error(depolarizing, n)
        if duration_ns > 0:
            relax = None
            for q in gate_qubits:
                t1_ns = params[q].get("T1", 1e9) * 1e3
                t2_ns = min(params[q].get("T2", 1e9) * 1e3, 2 * t1_ns)
                one = thermal_relaxation_error(t1_ns, t2_ns, duration_ns)
                relax = one if relax is None else relax.expand(one)
            if relax is not None:
                error = error.compose(relax)
        model.add_quantum_error(error, gate["gate"], [position[q] for q in gate_qubits])
    for q in qubits:
        p01 = params[q].get("prob_meas0_prep1", params[q].get("readout_error", 0.0))
        p10 = params[q].get("prob_meas1_prep0", params[q].get("readout_error", 0.0))
        if p01 > 0 or p10 > 0:
            model.add_readout_error(ReadoutError([[1 - p10, p10], [p01, 1 - p01]]), [position[q]])
    _noise_cache[key] = model
    if len(_noise_cache) > 64:
        _noise_cache.popitem(last=False)
    return model


def compact_observable(terms: dict[str, complex], qubits: list[int]) -> SparsePauliOp:
    """An observable on the device's qubits restricted to the active ones.

    Idle qubits stay in |0⟩: Z there is +1 and X or Y averages to 0.
    """
    labels: list[str] = []
    coeffs: list[complex] = []
    active = set(qubits)
    for label, coeff in terms.items():
        width = len(label)
        chars = {width - 1 - i: c for i, c in enumerate(label)}  # qubit index → Pauli
        if any(c in "XY" for q, c in chars.items() if q not in active):
            continue
        labels.append("".join(chars.get(q, "I") for q in reversed(qubits)))
        coeffs.append(coeff)
    if not labels:
        return SparsePauliOp(["I" * len(qubits)], [0.0])
    return SparsePauliOp(labels, coeffs)


def _check_width(
    circuit: QuantumCircuit, qubits: list[int], max_qubits: int, n_device: int
) -> None:
    if circuit.num_qubits > n_device:
        raise ExecutionError(
            f"circuit has {circuit.num_qubits} qubits but the backend has {n_device}"
        )
    if len(qubits) > max_qubits:
        raise ExecutionError(
            f"circuit uses {len(qubits)} active qubits; this emulator simulates at most "
            f"{max_qubits} qubits with noise"
        )


def execute(
    *,
    job_id: str,
    program_id: str,
    params_json: str,
    backend: str,
    props: dict[str, Any] | None,
    configuration: dict[str, Any],
    max_qubits: int,
) -> str:
    """Run a job's PUBs; returns the PrimitiveResult as the client's JSON."""
    try:
        params = json.loads(params_json, cls=RuntimeDecoder)
        pubs = params["pubs"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ExecutionError(f"invalid primitive inputs: {exc}") from exc
    options = params.get("options") or {}
    seed = zlib.crc32(job_id.encode())
    basis = list(configuration.get("basis_gates", []))
    n_device = int(configuration["n_qubits"])
    results = []
    for pub in pubs:
        circuit: QuantumCircuit = pub[0]
        qubits = active_qubits(circuit)
        _check_width(circuit, qubits, max_qubits, n_device)
        small = compact(circuit, qubits or [0])
        model = noise_model(backend, props, basis, qubits or [0]) if props else None
        backend_options: dict[str, Any] = {"noise_model": model} if model else {}
        if program_id == "sampler":
            parameter_values = pub[1] if len(pub) > 1 else None
            shots = (
                pub[2] if len(pub) > 2 and pub[2] else options.get("default_shots") or DEFAULT_SHOTS
            )
            sampler = SamplerV2(seed=seed, options={"backend_options": backend_options})
            sampler_pub = (small, parameter_values) if _has_values(parameter_values) else (small,)
            results.append(sampler.run([sampler_pub], shots=int(shots)).result()[0])
        elif program_id == "estimator":
            observables = pub[1]
            terms = observables if isinstance(observables, dict) else observables[0]
            observable = compact_observable(terms, qubits or [0])
            parameter_values = pub[2] if len(pub) > 2 else None
            precision = (
                pub[3]
                if len(pub) > 3 and pub[3]
                else options.get("default_precision") or DEFAULT_PRECISION
            )
            if model and len(qubits) <= DENSITY_MATRIX_MAX_QUBITS:
                backend_options["method"] = "density_matrix"
            estimator = EstimatorV2(
                options={
                    "backend_options": backend_options,
                    "run_options": {"seed_simulator": seed},
                }
            )
            estimator_pub = (
                (small, observable, parameter_values)
                if _has_values(parameter_values)
                else (small, observable)
            )
            result = estimator.run([estimator_pub], precision=float(precision or 0.0)).result()[0]
            results.append(result)
        else:
            raise ExecutionError(f"program {program_id!r} is not available on this emulator")
    return json.dumps(PrimitiveResult(results, metadata={"version": 2}), cls=RuntimeEncoder)


def _has_values(values: Any) -> bool:
    return values is not None and np.asarray(values).size > 0
