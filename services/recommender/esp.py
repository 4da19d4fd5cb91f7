"""Estimated success probability (ESP) of a circuit on a backend, from its calibration.

In the manner of mapomatic: transpile the circuit for a `Target` built from the backend's
recorded configuration and latest calibration (opt level 1 picks a noise-aware layout
with VF2Layout/VF2PostLayout from those errors), then multiply the success probability
of every operation along the chosen physical qubits:

    ESP = Π(1 − gate error) · Π(1 − readout error) · Π_q F_idle(q)

where F_idle is the process fidelity of a qubit left idle for its idle time within the
circuit (ASAP schedule from the gate durations) under T1/T2 relaxation,
(1 + e^(−t/T1) + 2·e^(−t/T2)) / 4. Gate errors already include decoherence during the
gate, so only idle time is charged to T1/T2.

Everything here is CPU work with no I/O; the recommender runs `score` in worker processes.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace

import rustworkx as rx
from qiskit import QuantumCircuit
from qiskit.circuit import CircuitInstruction as Instruction
from qiskit.circuit import Measure
from qiskit.circuit.equivalence_library import StandardEquivalenceLibrary
from qiskit.circuit.library import get_standard_gate_name_mapping
from qiskit.transpiler import InstructionProperties, PassManager, Target
from qiskit.transpiler.passes import (
    BasisTranslator,
    GateDirection,
    Optimize1qGatesDecomposition,
)

from qjt.circuits import CircuitError, parse_circuit, transpile_to_target
from qjt.contracts import BackendCalibration, BackendConfiguration

IGNORED_OPS = frozenset({"barrier", "delay"})
TARGET_CACHE_SIZE = 128
LAYOUT_CANDIDATES = 2000  # placements scored per circuit and backend, at most
LAYOUT_SECONDS = 0.25  # and for at most this long
LAYOUT_CALL_LIMIT = 2_000_000
# Fractional and pulse-level gates need angle constraints the transpiler cannot take from
# a plain calibration; without them the standard basis is complete.
UNUSED_BASIS = frozenset({"rzz", "rx", "delay", "reset", "measure", "init_qubit"})


@dataclass(frozen=True)
class DeviceCalibration:
    """A backend's configuration and one calibration snapshot, as the recommender uses them."""

    backend: str
    version: str
    num_qubits: int
    basis_gates: tuple[str, ...]
    coupling_map: tuple[tuple[int, int], ...]
    t1_us: tuple[float | None, ...]
    t2_us: tuple[float | None, ...]
    readout_error: tuple[float | None, ...]
    gates: tuple[tuple[str, tuple[int, ...], float | None, float | None], ...] = field(repr=False)

    @classmethod
    def from_events(
        cls, config: BackendConfiguration, calibration: BackendCalibration
    ) -> DeviceCalibration:
        """From the events the poller publishes (and the recorder stores)."""
        n = config.num_qubits
        t1: list[float | None] = [None] * n
        t2: list[float | None] = [None] * n
        readout: list[float | None] = [None] * n
        for q in calibration.qubits:
            if q.qubit < n:
                t1[q.qubit], t2[q.qubit], readout[q.qubit] = q.t1_us, q.t2_us, q.readout_error
        gates = tuple((g.gate, tuple(g.qubits), g.error, g.duration_ns) for g in calibration.gates)
        # The version names the data itself: same time stamp, other numbers → a new version.
        content = hashlib.sha256(repr((config.dedupe_key(), t1, t2, readout, gates)).encode())
        version = f"{calibration.calibrated_at.isoformat()}/{content.hexdigest()[:16]}"
        return cls(
            backend=config.backend,
            version=version,
            num_qubits=n,
            basis_gates=tuple(config.basis_gates),
            coupling_map=tuple((int(a), int(b)) for a, b in config.coupling_map),
            t1_us=tuple(t1),
            t2_us=tuple(t2),
            readout_error=tuple(readout),
            gates=gates,
        )


@dataclass(frozen=True)
class LayoutScore:
    """How a circuit fares on one backend: ESP, its error budget, the layout chosen."""

    backend: str
    version: str
    esp: float
    gate_error: float
    readout_error: float
    decoherence_error: float
    duration_us: float
    layout: tuple[int, ...]
    two_qubit_gates: int
    depth: int

    def budget(self) -> str:
        """The error budget as a reason a person can read."""
        return (
            f"error budget: gates {self.gate_error:.1%}, readout {self.readout_error:.1%}, "
            f"decoherence {self.decoherence_error:.1%} over {self.duration_us:.1f} µs"
        )


class NotSchedulable(ValueError):
    """The circuit cannot be transpiled for this backend (the message says why)."""


def circuit_key(qasm: str) -> str:
    """The cache key of a circuit's text."""
    return hashlib.sha256(qasm.encode()).hexdigest()


def ghz_qasm(num_qubits: int) -> str:
    """A GHZ circuit of `num_qubits` qubits: what the recommender ranks for when given none."""
    lines = ["OPENQASM 2.0;", 'include "qelib1.inc";', f"qreg q[{num_qubits}];",
             f"creg c[{num_qubits}];", "h q[0];"]  # fmt: skip
    lines += [f"cx q[{i}],q[{i + 1}];" for i in range(num_qubits - 1)]
    lines.append("measure q -> c;")
    return "\n".join(lines) + "\n"


def build_target(device: DeviceCalibration) -> Target:
    """A transpiler target with the calibration's gate and readout errors and durations."""
    standard = get_standard_gate_name_mapping()
    target = Target(description=device.backend, num_qubits=device.num_qubits)
    by_gate: dict[str, dict[tuple[int, ...], InstructionProperties | None]] = {}
    for name, qubits, error, duration_ns in device.gates:
        if name not in standard or name in UNUSED_BASIS or name not in device.basis_gates:
            continue
        if any(q >= device.num_qubits for q in qubits):
            continue
        duration = duration_ns * 1e-9 if duration_ns is not None else None
        by_gate.setdefault(name, {})[qubits] = InstructionProperties(duration, error)
    edges = device.coupling_map or tuple(
        (a, b) for a in range(device.num_qubits) for b in range(device.num_qubits) if a != b
    )
    for name in device.basis_gates:
        if name not in standard or name in UNUSED_BASIS:
            continue
        gate = standard[name]
        props = by_gate.get(name)
        if not props:
            if gate.num_qubits == 1:
                props = {(q,): None for q in range(device.num_qubits)}
            elif gate.num_qubits == 2:
                props = {edge: None for edge in edges}
            else:
                continue
        if gate.num_qubits == 1:  # a qubit the calibration left out still gets the gate
            for q in range(device.num_qubits):
                props.setdefault((q,), None)
        target.add_instruction(gate, props)
    target.add_instruction(
        Measure(),
        {
            (q,): InstructionProperties(error=device.readout_error[q])
            for q in range(device.num_qubits)
        },
    )
    return target


_targets: OrderedDict[tuple[str, str], Target] = OrderedDict()


def target_for(device: DeviceCalibration) -> Target:
    """`build_target`, cached per backend and calibration version (in this process)."""
    key = (device.backend, device.version)
    target = _targets.get(key)
    if target is None:
        target = build_target(device)
        _targets[key] = target
        if len(_targets) > TARGET_CACHE_SIZE:
            _targets.popitem(last=False)
    else:
        _targets.move_to_end(key)
    return target


def idle_fidelity(idle_s: float, t1_us: float | None, t2_us: float | None) -> float:
    """Process fidelity of a qubit idle for `idle_s` under T1/T2 relaxation."""
    if idle_s <= 0 or not t1_us or not t2_us:
        return 1.0
    t1 = t1_us * 1e-6
    t2 = min(t2_us, 2 * t1_us) * 1e-6
    return (1 + math.exp(-idle_s / t1) + 2 * math.exp(-idle_s / t2)) / 4


Op = tuple[str, tuple[int, ...]]


def _ops(circuit: QuantumCircuit) -> list[tuple[Instruction, Op]]:
    """The circuit's operations with their qubit indices (barriers and delays left out)."""
    return [
        (i, (i.operation.name, tuple(circuit.find_bit(q).index for q in i.qubits)))
        for i in circuit.data
        if i.operation.name not in IGNORED_OPS
    ]


def _props(target: Target, op: Op) -> InstructionProperties | None:
    """Calibration of an operation; a two-qubit gate may be calibrated the other way round."""
    name, qargs = op
    if name not in target.operation_names:
        return None
    table = target[name]
    found = table.get(qargs)
    if found is None and len(qargs) == 2:
        found = table.get(qargs[::-1])
    return found


def esp_of(ops: list[Op], target: Target, device: DeviceCalibration) -> LayoutScore:
    """ESP of operations on physical qubits, with its error budget."""
    gate_ok = readout_ok = idle_ok = 1.0
    ready: dict[int, float] = {}  # when each qubit is next free (s)
    first: dict[int, float] = {}
    busy: dict[int, float] = {}
    two_qubit = 0
    depth: dict[int, int] = {}
    for op in ops:
        name, qargs = op
        props = _props(target, op)
        error = (props.error if props is not None else None) or 0.0
        duration = (props.duration if props is not None else None) or 0.0
        if name == "measure":
            readout_ok *= 1 - error
        else:
            gate_ok *= 1 - error
            two_qubit += len(qargs) == 2
        start = max((ready.get(q, 0.0) for q in qargs), default=0.0)
        level = max((depth.get(q, 0) for q in qargs), default=0) + 1
        for q in qargs:
            first.setdefault(q, start)
            ready[q] = start + duration
            busy[q] = busy.get(q, 0.0) + duration
            depth[q] = level
    end = max(ready.values(), default=0.0)
    for q, began in first.items():
        # A qubit waits from its first operation to the end of the circuit (measurements
        # happen at the end), less the time its own gates take.
        idle = (end - began) - busy[q]
        idle_ok *= idle_fidelity(idle, device.t1_us[q], device.t2_us[q])
    return LayoutScore(
        backend=device.backend,
        version=device.version,
        esp=gate_ok * readout_ok * idle_ok,
        gate_error=1 - gate_ok,
        readout_error=1 - readout_ok,
        decoherence_error=1 - idle_ok,
        duration_us=end * 1e6,
        layout=(),
        two_qubit_gates=two_qubit,
        depth=max(depth.values(), default=0),
    )


def _error_table(target: Target) -> dict[Op, float]:
    """−log(1 − error) of every calibrated operation, both directions for two-qubit gates."""
    table: dict[Op, float] = {}
    for name in target.operation_names:
        for qargs, props in target[name].items():
            if qargs is None:
                continue
            error = (props.error if props is not None else None) or 0.0
            cost = -math.log(max(1 - error, 1e-12))
            table[(name, qargs)] = cost
            if len(qargs) == 2:
                table.setdefault((name, qargs[::-1]), cost)
    return table


def _coupling_graph(device: DeviceCalibration) -> rx.PyGraph:
    graph = rx.PyGraph(multigraph=False)
    graph.add_nodes_from(range(device.num_qubits))
    graph.add_edges_from_no_data([(a, b) for a, b in device.coupling_map])
    return graph


_tables: OrderedDict[tuple[str, str], tuple[dict[Op, float], rx.PyGraph]] = OrderedDict()


def _tables_for(device: DeviceCalibration, target: Target) -> tuple[dict[Op, float], rx.PyGraph]:
    key = (device.backend, device.version)
    found = _tables.get(key)
    if found is None:
        found = (_error_table(target), _coupling_graph(device))
        _tables[key] = found
        if len(_tables) > TARGET_CACHE_SIZE:
            _tables.popitem(last=False)
    return found


def best_layout(
    ops: list[Op], device: DeviceCalibration, target: Target
) -> tuple[list[int], list[int]]:
    """(active qubits, where to put them): the placement with the least gate and readout error.

    As mapomatic does: the routed circuit is deflated to the qubits it uses, and every
    placement of its interaction graph on the coupling map that VF2 finds (up to
    LAYOUT_CANDIDATES, within LAYOUT_SECONDS) is scored; the transpiler's own is a candidate.
    """
    active = sorted({q for _, qargs in ops for q in qargs})
    if not device.coupling_map or len(active) < 2:
        return active, active
    local = {q: i for i, q in enumerate(active)}
    counts: dict[Op, int] = {}
    for name, qargs in ops:
        key = (name, tuple(local[q] for q in qargs))
        counts[key] = counts.get(key, 0) + 1
    errors, coupling = _tables_for(device, target)

    def cost(place: list[int]) -> float | None:
        total = 0.0
        for (name, qargs), n in counts.items():
            found = errors.get((name, tuple(place[q] for q in qargs)))
            if found is None:
                return None  # that operation is not available there
            total += n * found
        return total

    interaction = rx.PyGraph(multigraph=False)
    interaction.add_nodes_from(range(len(active)))
    pairs = {(min(qargs), max(qargs)) for _, qargs in counts if len(qargs) == 2}
    interaction.add_edges_from_no_data(sorted(pairs))
    best, best_cost = active, cost(active)
    deadline = time.monotonic() + LAYOUT_SECONDS
    mappings = rx.vf2_mapping(
        coupling, interaction, subgraph=True, induced=False, id_order=False,
        call_limit=LAYOUT_CALL_LIMIT,
    )  # fmt: skip
    for n, mapping in enumerate(mappings):
        place = [0] * len(active)
        for physical, virtual in mapping.items():
            place[virtual] = physical
        found = cost(place)
        if found is not None and (best_cost is None or found < best_cost):
            best, best_cost = place, found
        if n >= LAYOUT_CANDIDATES or time.monotonic() > deadline:
            break
    return active, best


def place(qasm: str, device: DeviceCalibration) -> tuple[QuantumCircuit, LayoutScore]:
    """The circuit transpiled for the backend and moved to its best placement, with its ESP."""
    circuit = parse_circuit(qasm)
    if circuit.num_qubits > device.num_qubits:
        raise NotSchedulable(
            f"{device.backend} has {device.num_qubits} qubits; the circuit needs "
            f"{circuit.num_qubits}"
        )
    target = target_for(device)
    seed = int(circuit_key(qasm)[:8], 16)
    routed = transpile_for(circuit, target, seed)
    ops = _ops(routed)
    active, where = best_layout([op for _, op in ops], device, target)
    move = dict(zip(active, where, strict=True))
    placed = QuantumCircuit(device.num_qubits, name=routed.name)
    for creg in routed.cregs:
        placed.add_register(creg)
    for instruction, (_name, qargs) in ops:
        clbits = [placed.clbits[routed.find_bit(c).index] for c in instruction.clbits]
        placed.append(instruction.operation, [move[q] for q in qargs], clbits)
    if where != active:
        placed = _finish(placed, target)  # a moved two-qubit gate may need turning round
    result = esp_of([op for _, op in _ops(placed)], target, device)
    initial = routed.layout.final_index_layout() if routed.layout is not None else []
    layout = tuple(move.get(q, q) for q in initial)
    return placed, replace(result, layout=layout)


def _finish(circuit: QuantumCircuit, target: Target) -> QuantumCircuit:
    """Gate directions the backend supports, in its basis, single-qubit runs merged."""
    manager = PassManager(
        [
            GateDirection(None, target=target),
            BasisTranslator(StandardEquivalenceLibrary, target.operation_names, target=target),
            Optimize1qGatesDecomposition(target=target),
        ]
    )
    finished = manager.run(circuit)
    return finished


def transpile_for(circuit: QuantumCircuit, target: Target, seed: int) -> QuantumCircuit:
    """The circuit as the backend would run it (layout, routing, basis)."""
    try:
        [isa] = transpile_to_target([circuit], target, optimization_level=1, seed=seed)
        return isa
    except CircuitError as exc:  # its message already says "cannot transpile"
        raise NotSchedulable(f"{target.description}: {exc}") from None
    except Exception as exc:  # the transpiler raises many kinds; all mean "cannot run here"
        raise NotSchedulable(f"cannot transpile for {target.description}: {exc}") from None


def score(qasm: str, device: DeviceCalibration) -> LayoutScore:
    """ESP of `qasm` at its best placement on the backend (worker-process entry point)."""
    return place(qasm, device)[1]


def warm_up() -> bool:
    """Import and exercise the transpiler once (a worker's first job is otherwise slow)."""
    parse_circuit(ghz_qasm(2))
    return True
