"""Circuits and observables as users send them: OpenQASM 2 or 3 text, Pauli strings.

The API validates with these before accepting a job (so a bad circuit is a 422 naming
the line, and nothing is queued); the submitter parses with the same functions before
transpiling. Errors never echo more than a short excerpt of the user's text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from qiskit import QuantumCircuit, qasm2, qasm3
from qiskit.exceptions import QiskitError
from qiskit.quantum_info import SparsePauliOp
from qiskit.transpiler import Target, generate_preset_pass_manager
from qiskit.transpiler.exceptions import TranspilerError

from qjt.contracts import ObservableTerm

_VERSION = re.compile(r"^\s*(?://[^\n]*\n\s*)*OPENQASM\s+(\d+)(?:\.\d+)?\s*;", re.IGNORECASE)
_QASM2_POSITION = re.compile(r"<input>:(\d+),(\d+):\s*")
_QASM3_POSITION = re.compile(r"^L(\d+):C(\d+):\s*")


class CircuitError(ValueError):
    """A circuit or observable this system cannot run; the message says which and where."""


@dataclass(frozen=True)
class CircuitSummary:
    """What the gateway needs to know about a parsed circuit."""

    num_qubits: int
    num_clbits: int
    has_measurements: bool


def qasm_version(source: str) -> int:
    """2 or 3, from the `OPENQASM` header; raises CircuitError without one."""
    match = _VERSION.match(source)
    if not match or match.group(1) not in ("2", "3"):
        raise CircuitError("must start with an 'OPENQASM 2.0;' or 'OPENQASM 3.0;' header")
    return int(match.group(1))


def parse_circuit(source: str) -> QuantumCircuit:
    """A circuit from OpenQASM 2 or 3 text; CircuitError names the line on failure."""
    version = qasm_version(source)
    try:
        if version == 2:
            return qasm2.loads(source, custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS)
        return qasm3.loads(source)
    except QiskitError as exc:
        raise CircuitError(_qasm_message(exc, version)) from None
    except Exception as exc:  # the OpenQASM 3 parser raises plain Exception subclasses
        raise CircuitError(_qasm_message(exc, version)) from None


def _qasm_message(exc: BaseException, version: int) -> str:
    """The parser's reason with its position as 'line L, column C: reason'."""
    message = ""
    cause: BaseException | None = exc
    while cause is not None and not message:
        token = getattr(cause, "offendingToken", None)  # the OpenQASM 3 parser's position
        if token is not None:
            return (
                f"invalid OpenQASM {version} at line {token.line}, column {token.column}: "
                f"unexpected {token.text!r}"
            )
        text = str(cause).strip().strip("'\"")
        message = "" if text == "None" else text
        cause = cause.__cause__ or cause.__context__
    message = message or "syntax error"
    pattern = _QASM2_POSITION if version == 2 else _QASM3_POSITION
    match = pattern.search(message)
    if match is None and version == 3:
        match = re.match(r"^(\d+),(\d+):\s*", message)
    if match:
        line, column = match.group(1), match.group(2)
        reason = (message[: match.start()] + message[match.end() :]).strip()
        return f"invalid OpenQASM {version} at line {line}, column {column}: {reason}"
    return f"invalid OpenQASM {version}: {message}"


def summarize(circuit: QuantumCircuit) -> CircuitSummary:
    """Width and whether the circuit measures anything."""
    return CircuitSummary(
        num_qubits=circuit.num_qubits,
        num_clbits=circuit.num_clbits,
        has_measurements=any(inst.operation.name == "measure" for inst in circuit.data),
    )


def observable(terms: Sequence[ObservableTerm], num_qubits: int) -> SparsePauliOp:
    """A sum of Pauli terms as an operator; CircuitError if a term's width is not the circuit's.

    Pauli strings read like Qiskit's: the rightmost letter acts on qubit 0.
    """
    if not terms:
        raise CircuitError("an observable needs at least one Pauli term")
    for term in terms:
        if len(term.pauli) != num_qubits:
            raise CircuitError(
                f"observable term {term.pauli!r} acts on {len(term.pauli)} qubits but the "
                f"circuit has {num_qubits}"
            )
    return SparsePauliOp.from_list([(term.pauli, term.coefficient) for term in terms])


def transpile_to_target(
    circuits: list[QuantumCircuit], target: Target, optimization_level: int, seed: int | None = None
) -> list[QuantumCircuit]:
    """`circuits` rewritten in `target`'s gates on its qubits (what IBM accepts).

    Qiskit's basis translator turns a two-qubit gate the target has only the other way
    round only when the target also has an H gate; a target mixing one-way CX with ECR
    (one of IBM's fake backends) then fails for some layouts. Those circuits are
    synthesised for the target instead, which handles gate direction itself. Raises
    CircuitError, with the transpiler's reason, when neither way works.
    """
    for translation_method in ("translator", "synthesis"):
        manager = generate_preset_pass_manager(
            optimization_level=optimization_level,
            target=target,
            seed_transpiler=seed,
            translation_method=translation_method,
        )
        try:
            isa: list[QuantumCircuit] = manager.run(circuits)
            return isa
        except TranspilerError as exc:
            failure = exc
    raise CircuitError(f"cannot transpile: {failure}") from None
