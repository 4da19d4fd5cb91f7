"""Compacting device-wide circuits and observables onto the qubits a circuit uses."""

from __future__ import annotations

import json

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.primitives.containers.sampler_pub import SamplerPub
from qiskit.quantum_info import SparsePauliOp, Statevector
from qiskit_ibm_runtime.json import RuntimeDecoder, RuntimeEncoder

from services.emulator.execution import (
    ExecutionError,
    active_qubits,
    compact,
    compact_observable,
    execute,
)


def wide_bell(width: int = 10, a: int = 3, b: int = 7) -> QuantumCircuit:
    circuit = QuantumCircuit(width)
    circuit.h(a)
    circuit.cx(a, b)
    circuit.barrier()
    return circuit


def test_active_qubits_ignore_barriers_and_idle_wires() -> None:
    assert active_qubits(wide_bell()) == [3, 7]


def test_compacted_circuit_has_the_same_state_on_its_qubits() -> None:
    small = compact(wide_bell(), [3, 7])
    assert small.num_qubits == 2
    assert Statevector(small).equiv(Statevector.from_label("00").evolve(_bell2()))


def _bell2() -> QuantumCircuit:
    c = QuantumCircuit(2)
    c.h(0)
    c.cx(0, 1)
    return c


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("IIZIIIZIII", 1.0),  # Z3 Z7 on a Bell pair
        ("ZIZIIIZIII", 1.0),  # Z on idle qubit 9 (|0⟩) multiplies by +1
        ("XIZIIIZIII", 0.0),  # X on an idle qubit averages to 0
        ("IIXIIIXIII", 1.0),  # X3 X7
    ],
)
def test_observable_on_the_device_keeps_its_value_on_the_compact_circuit(
    label: str, expected: float
) -> None:
    device_value = Statevector(wide_bell()).expectation_value(SparsePauliOp(label))
    small = compact(wide_bell(), [3, 7])
    compact_value = Statevector(small).expectation_value(compact_observable({label: 1.0}, [3, 7]))
    assert np.isclose(device_value, expected) and np.isclose(compact_value, expected)


def test_too_many_active_qubits_is_a_clear_failure() -> None:
    circuit = QuantumCircuit(5)
    for q in range(4):
        circuit.cx(q, q + 1)
    circuit.measure_all()
    params = json.dumps({"pubs": [SamplerPub.coerce(circuit, 10)]}, cls=RuntimeEncoder)
    with pytest.raises(
        ExecutionError, match="uses 5 active qubits; this emulator simulates at most 3"
    ):
        execute(
            job_id="j",
            program_id="sampler",
            params_json=params,
            backend="b",
            props=None,
            configuration={"n_qubits": 5, "basis_gates": []},
            max_qubits=3,
        )


def test_unreadable_inputs_are_a_clear_failure() -> None:
    with pytest.raises(ExecutionError, match="invalid primitive inputs"):
        execute(
            job_id="j",
            program_id="sampler",
            params_json="{}",
            backend="b",
            props=None,
            configuration={"n_qubits": 5},
            max_qubits=3,
        )


def estimate(params: dict[str, object]) -> tuple[float, float]:
    """(value, standard error) of the single PUB in an Estimator job's inputs."""
    answer = execute(
        job_id="j",
        program_id="estimator",
        params_json=json.dumps(params, cls=RuntimeEncoder),
        backend="b",
        props=None,
        configuration={"n_qubits": 10, "basis_gates": []},
        max_qubits=10,
    )
    data = json.loads(answer, cls=RuntimeDecoder)[0].data
    return float(data.evs), float(data.stds)


def test_estimator_aims_at_ibms_default_precision_unless_told_otherwise() -> None:
    value, error = estimate({"pubs": [(wide_bell(), {"ZZ": 1.0})]})
    assert error == pytest.approx(1 / 64)  # IBM's default: 1 / sqrt(4096)
    assert abs(value - 1.0) < 5 / 64
    _, told = estimate(
        {"pubs": [(wide_bell(), {"ZZ": 1.0})], "options": {"default_precision": 0.1}}
    )
    assert told == pytest.approx(0.1)
    _, per_pub = estimate({"pubs": [(wide_bell(), {"ZZ": 1.0}, None, 0.05)]})
    assert per_pub == pytest.approx(0.05)
