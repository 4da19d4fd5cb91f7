"""Emulated calibrations: real published values, drifting, reproducible for any past time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.emulator.devices import Device, load_devices


@pytest.fixture(scope="module")
def devices() -> dict[str, Device]:
    return load_devices(seed=7)


def t1s(props: dict, n: int = 20) -> list[float]:  # type: ignore[type-arg]
    return [next(p["value"] for p in q if p["name"] == "T1") for q in props["qubits"][:n]]


def test_every_fake_backend_is_served_under_its_ibm_name(devices: dict[str, Device]) -> None:
    assert len(devices) >= 60
    assert {"ibm_kyiv", "ibm_sherbrooke", "ibm_torino", "ibmq_manila"} <= set(devices)
    assert devices["ibm_kyiv"].num_qubits == 127


def test_snapshots_drift_hourly_and_jump_at_recalibration(devices: dict[str, Device]) -> None:
    kyiv = devices["ibm_kyiv"]
    morning = datetime(2026, 11, 3, 8, 30, tzinfo=UTC)
    same_hour = kyiv.properties(morning + timedelta(minutes=20))
    next_hour = kyiv.properties(morning + timedelta(hours=1))
    next_day = kyiv.properties(morning + timedelta(days=1))
    now = kyiv.properties(morning)
    assert (
        now is not None and same_hour is not None and next_hour is not None and next_day is not None
    )

    assert t1s(now) == t1s(same_hour)
    assert t1s(now) != t1s(next_hour)
    hourly = max(abs(a / b - 1) for a, b in zip(t1s(now), t1s(next_hour), strict=True))
    daily = max(abs(a / b - 1) for a, b in zip(t1s(now), t1s(next_day), strict=True))
    assert daily > hourly  # recalibration moves values further than an hour's drift
    assert (
        next_hour["last_update_date"]
        == (morning + timedelta(hours=1)).replace(minute=0).isoformat()
    )


def test_past_snapshots_are_reproducible_across_processes_with_the_same_seed(
    devices: dict[str, Device],
) -> None:
    moment = datetime(2026, 10, 1, 12, tzinfo=UTC)
    fresh = load_devices(seed=7)["ibm_kyiv"].properties(moment)
    other_seed = load_devices(seed=8)["ibm_kyiv"].properties(moment)
    assert fresh is not None and other_seed is not None
    assert t1s(devices["ibm_kyiv"].properties(moment) or {}) == t1s(fresh)
    assert t1s(fresh) != t1s(other_seed)


def test_calibration_stays_physical_and_some_qubits_go_bad(devices: dict[str, Device]) -> None:
    bad = 0
    for name in ("ibm_kyiv", "ibm_sherbrooke", "ibm_brisbane", "ibm_torino"):
        base = devices[name].base_properties
        props = devices[name].properties(datetime(2026, 11, 4, 10, tzinfo=UTC))
        assert base is not None and props is not None
        for q, (params, base_params) in enumerate(
            zip(props["qubits"], base["qubits"], strict=True)
        ):
            values = {p["name"]: p["value"] for p in params}
            base_values = {p["name"]: p["value"] for p in base_params}
            assert 0 < values["T2"] <= 2 * values["T1"] + 1e-9, (name, q)
            assert 0 <= values["readout_error"] <= 0.5
            if values["T1"] < 0.3 * base_values["T1"]:
                bad += 1
    assert bad >= 1, "about 2% of qubits come out of recalibration bad"


def test_some_days_have_maintenance_windows(devices: dict[str, Device]) -> None:
    kyiv = devices["ibm_kyiv"]
    days = [datetime(2026, 11, 1, tzinfo=UTC) + timedelta(days=d) for d in range(60)]
    windows = [kyiv.maintenance_window(day) for day in days]
    with_window = [w for w in windows if w]
    assert 2 <= len(with_window) <= 25
    start, end = with_window[0]
    assert kyiv.in_maintenance(start + (end - start) / 2) == end
    assert kyiv.in_maintenance(end + timedelta(minutes=1)) is None
