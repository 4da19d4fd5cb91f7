"""Estimated success probability: what the layout and the calibration make of a circuit."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from qjt.contracts import (
    BackendCalibration,
    BackendConfiguration,
    GateCalibration,
    QubitCalibration,
)
from services.recommender.esp import (
    DeviceCalibration,
    NotSchedulable,
    ghz_qasm,
    idle_fidelity,
    score,
)

AT = datetime(2026, 11, 20, tzinfo=UTC)
LINE = [(0, 1), (1, 0), (1, 2), (2, 1), (2, 3), (3, 2), (3, 4), (4, 3)]


def device(
    cx_error: dict[tuple[int, int], float] | None = None,
    readout: dict[int, float] | None = None,
    t1_us: float = 200.0,
    name: str = "line5",
) -> DeviceCalibration:
    """Five qubits in a line; every error 1% unless given."""
    config = BackendConfiguration(
        backend=name, num_qubits=5, basis_gates=["cx", "rz", "sx", "x"], max_shots=100_000,
        coupling_map=LINE,
    )  # fmt: skip
    errors = cx_error or {}
    gates = [
        GateCalibration(gate="cx", qubits=list(e), error=errors.get(e, 0.01), duration_ns=400)
        for e in LINE
    ]
    for q in range(5):
        gates += [
            GateCalibration(gate="sx", qubits=[q], error=0.0005, duration_ns=35),
            GateCalibration(gate="x", qubits=[q], error=0.0005, duration_ns=35),
            GateCalibration(gate="rz", qubits=[q], error=0.0, duration_ns=0),
        ]
    qubits = [
        QubitCalibration(
            qubit=q, t1_us=t1_us, t2_us=t1_us, readout_error=(readout or {}).get(q, 0.01)
        )
        for q in range(5)
    ]
    return DeviceCalibration.from_events(
        config, BackendCalibration(backend=name, calibrated_at=AT, qubits=qubits, gates=gates)
    )


def test_bell_esp_is_the_product_of_its_operations_successes() -> None:
    result = score(ghz_qasm(2), device())
    # h → rz·sx·rz (one sx), one cx, two measurements; rz is virtual and free.
    gates = (1 - 0.0005) * (1 - 0.01)
    readout = (1 - 0.01) ** 2
    assert result.two_qubit_gates == 1
    assert result.gate_error == pytest.approx(1 - gates, rel=1e-6)
    assert result.readout_error == pytest.approx(1 - readout, rel=1e-6)
    assert result.esp == pytest.approx(gates * readout * (1 - result.decoherence_error), rel=1e-9)
    assert result.decoherence_error == 0  # no qubit idles: qubit 1 starts with the cx


def test_the_layout_avoids_a_bad_link_and_a_bad_readout() -> None:
    bad = device(cx_error={(0, 1): 0.3, (1, 0): 0.3}, readout={3: 0.4, 4: 0.2})
    result = score(ghz_qasm(2), bad)
    assert set(result.layout) == {1, 2}
    assert result.esp > 0.95


def test_worse_calibration_lowers_esp_and_decoherence_grows_with_idle_time() -> None:
    good = score(ghz_qasm(4), device())
    worse = score(ghz_qasm(4), device(cx_error={e: 0.05 for e in LINE}))
    short_lived = score(ghz_qasm(4), device(t1_us=2.0))
    assert worse.esp < good.esp
    assert short_lived.decoherence_error > good.decoherence_error
    assert idle_fidelity(0, 100, 100) == 1.0
    assert idle_fidelity(100e-6, 100, 100) == pytest.approx((1 + 3 * math.exp(-1)) / 4)
    assert idle_fidelity(1e-6, 100, 100) > idle_fidelity(10e-6, 100, 100)


def test_a_circuit_wider_than_the_backend_cannot_be_scored() -> None:
    with pytest.raises(NotSchedulable, match="line5 has 5 qubits"):
        score(ghz_qasm(6), device())
