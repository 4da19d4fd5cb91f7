"""Parsing users' circuits and observables: errors name the line and the problem."""

from __future__ import annotations

import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import Measure, Parameter
from qiskit.circuit.library import CXGate, ECRGate, RZGate, SXGate, XGate
from qiskit.quantum_info import Operator
from qiskit.transpiler import InstructionProperties, Target

from qjt.circuits import (
    CircuitError,
    observable,
    parse_circuit,
    summarize,
    transpile_to_target,
)
from qjt.contracts import ObservableTerm

BELL3 = 'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[2] q;\nbit[2] c;\nh q[0];\ncx q[0], q[1];\nc = measure q;\n'  # noqa: E501


def test_openqasm_2_and_3_parse_to_the_same_shape() -> None:
    two = parse_circuit(
        'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\ncx q[0],q[1];\n'
        "measure q -> c;\n"
    )
    three = parse_circuit(BELL3)
    assert summarize(two) == summarize(three)
    assert summarize(three).num_qubits == 2 and summarize(three).has_measurements


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("OPENQASM 2.0;\nqreg q[2];\nh q[0];\n", "OpenQASM 2 at line 3, column 0"),
        (
            'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[2] q;\ncx q[0], q[5;\n',
            "line 4, column 12",
        ),
        ("OPENQASM 3.0;\nqubit[1] q;\nfoo q[0];\n", "gate 'foo' is not defined"),
        ("qreg q[1];", "'OPENQASM 2.0;' or 'OPENQASM 3.0;' header"),
        ("OPENQASM 4.0;\n", "header"),
    ],
)
def test_bad_circuits_are_refused_with_their_position(source: str, message: str) -> None:
    with pytest.raises(CircuitError) as caught:
        parse_circuit(source)
    assert message in str(caught.value)


def test_observable_width_must_match_the_circuit() -> None:
    op = observable([ObservableTerm(pauli="ZZ"), ObservableTerm(pauli="XX", coefficient=0.5)], 2)
    assert op.num_qubits == 2 and len(op) == 2
    with pytest.raises(CircuitError, match="acts on 3 qubits but the circuit has 2"):
        observable([ObservableTerm(pauli="ZZZ")], 2)


def one_way_target() -> Target:
    """CX only from 0 to 1, ECR from 1 to 2, no H gate: like IBM's mixed fake backend."""
    target = Target(num_qubits=3, description="one-way")
    target.add_instruction(CXGate(), {(0, 1): InstructionProperties(error=0.01)})
    target.add_instruction(ECRGate(), {(1, 2): InstructionProperties(error=0.01)})
    for gate in (RZGate(Parameter("angle")), SXGate(), XGate(), Measure()):
        target.add_instruction(gate, {(q,): None for q in range(3)})
    return target


def test_a_one_way_gate_the_translator_cannot_flip_is_synthesised_instead() -> None:
    target = one_way_target()
    circuit = QuantumCircuit(3)
    circuit.h(1)
    circuit.cx(1, 0)
    circuit.cx(1, 2)
    circuit.measure_all()
    [isa] = transpile_to_target([circuit], target, optimization_level=1, seed=0)
    for instruction in isa.data:  # every gate is one the target has, on qubits it has it
        qubits = tuple(isa.find_bit(q).index for q in instruction.qubits)
        name = instruction.operation.name
        assert name == "barrier" or target.instruction_supported(name, qubits), (name, qubits)
    same = Operator.from_circuit(isa.remove_final_measurements(inplace=False))
    assert same.equiv(Operator(circuit.remove_final_measurements(inplace=False)))


def test_a_circuit_too_wide_for_the_target_is_a_clear_error() -> None:
    circuit = QuantumCircuit(5)
    circuit.h(0)
    with pytest.raises(CircuitError, match="cannot transpile"):
        transpile_to_target([circuit], one_way_target(), optimization_level=1)
