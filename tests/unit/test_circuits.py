"""Parsing users' circuits and observables: errors name the line and the problem."""

from __future__ import annotations

import pytest

from qjt.circuits import CircuitError, observable, parse_circuit, summarize
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
