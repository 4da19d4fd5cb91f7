"""Emulated backends: the fake provider's real configurations and calibrations, drifting.

Time is emulated (`Clock`): `QJT_EMULATOR_SPEEDUP` emulated seconds pass per real second.
A calibration snapshot is taken every emulated hour. Each emulated day starts with a
recalibration (every qubit's T1, T2, readout error and every gate error jump to new
values around the device's published ones; about 2% of qubits come out bad), and through
the day the values random-walk. Every number is a function of (seed, backend, time), so
`properties(datetime=...)` for a past time returns the same snapshot whenever asked.
Each day a backend may also have a maintenance window (not operational).
"""

from __future__ import annotations

import copy
import json
import math
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

SNAPSHOT_S = 3600.0  # a calibration snapshot every emulated hour
SNAPSHOTS_PER_DAY = 24
BAD_QUBIT_RATE = 0.02
MAINTENANCE_RATE = 0.15  # share of days with a maintenance window


class Clock:
    """Emulated time: starts at the real time of start-up, runs `speedup` times faster."""

    def __init__(self, speedup: float, start: datetime | None = None) -> None:
        self.speedup = speedup
        self.start = start or datetime.now(UTC)
        self._start_mono = time.monotonic()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.elapsed_s())

    def elapsed_s(self) -> float:
        """Emulated seconds since start-up."""
        return (time.monotonic() - self._start_mono) * self.speedup

    def epoch_s(self, moment: datetime | None = None) -> float:
        """Emulated POSIX seconds of `moment` (default: now)."""
        return (moment or self.now()).timestamp()

    # Clients are shown wall-clock times, as IBM shows them: an emulated moment maps to
    # the real moment it passed, so our own timestamps and the emulator's share one clock
    # (queues and calibrations just move `speedup` times faster).

    def shown_s(self, emulated_s: float) -> float:
        """The wall-clock POSIX seconds at which emulated second `emulated_s` passed."""
        start_s = self.start.timestamp()
        return start_s + (emulated_s - start_s) / self.speedup

    def emulated(self, shown: datetime) -> datetime:
        """The emulated moment a client's wall-clock `shown` stands for (naive: UTC)."""
        if shown.tzinfo is None:
            shown = shown.replace(tzinfo=UTC)
        start_s = self.start.timestamp()
        return datetime.fromtimestamp(start_s + (shown.timestamp() - start_s) * self.speedup, UTC)


def stable_index(name: str) -> int:
    """A number per backend name that does not change between runs (seeds its RNGs)."""
    return zlib.crc32(name.encode())


@dataclass
class Device:
    """One emulated backend and its published data."""

    name: str
    directory: Path
    conf_file: str
    props_file: str | None
    seed: int
    clock: Clock | None = None  # set: calibration dates are shown in wall-clock time

    @cached_property
    def configuration(self) -> dict[str, Any]:
        return dict(json.loads((self.directory / self.conf_file).read_text()))

    @cached_property
    def base_properties(self) -> dict[str, Any] | None:
        if not self.props_file:
            return None
        return dict(json.loads((self.directory / self.props_file).read_text()))

    @property
    def num_qubits(self) -> int:
        return int(self.configuration["n_qubits"])

    @property
    def index(self) -> int:
        return stable_index(self.name)

    _snapshots: dict[int, dict[str, Any]] = field(default_factory=dict, repr=False)

    # -- calibration ------------------------------------------------------

    def snapshot_index(self, moment: datetime) -> int:
        return math.floor(moment.timestamp() / SNAPSHOT_S)

    def properties(self, moment: datetime) -> dict[str, Any] | None:
        """The calibration snapshot in force at `moment` (IBM's properties JSON)."""
        base = self.base_properties
        if base is None:
            return None
        index = self.snapshot_index(moment)
        cached = self._snapshots.get(index)
        if cached is None:
            cached = self._drifted(base, index)
            if len(self._snapshots) > 48:
                self._snapshots.pop(next(iter(self._snapshots)))
            self._snapshots[index] = cached
        return cached

    def _drifted(self, base: dict[str, Any], index: int) -> dict[str, Any]:
        day, step = divmod(index, SNAPSHOTS_PER_DAY)
        rng = np.random.default_rng([self.seed, self.index, day % 2**32, 1])
        n = len(base["qubits"])
        gates = base["gates"]
        # Recalibration at the start of the day: log-normal jumps around published values.
        qubit_jump = rng.normal(0.0, 0.15, size=(n, 3))
        gate_jump = rng.normal(0.0, 0.15, size=len(gates))
        bad = rng.random(n) < BAD_QUBIT_RATE
        # Then an hourly random walk.
        qubit_walk = rng.normal(0.0, 0.04, size=(SNAPSHOTS_PER_DAY, n, 3)).cumsum(axis=0)[step]
        gate_walk = rng.normal(0.0, 0.04, size=(SNAPSHOTS_PER_DAY, len(gates))).cumsum(axis=0)[step]
        qubit_factor = np.exp(qubit_jump + qubit_walk)
        gate_factor = np.exp(gate_jump + gate_walk)

        taken_s = index * SNAPSHOT_S
        if self.clock is not None:
            taken_s = self.clock.shown_s(taken_s)
        stamp = datetime.fromtimestamp(taken_s, UTC).isoformat()
        props = copy.deepcopy(base)
        props["last_update_date"] = stamp
        for q, params in enumerate(props["qubits"]):
            t1 = None
            for param in params:
                param["date"] = stamp
                name = param["name"]
                if name == "T1":
                    param["value"] *= qubit_factor[q, 0] * (0.15 if bad[q] else 1.0)
                    t1 = param["value"]
                elif name == "T2":
                    param["value"] *= qubit_factor[q, 1] * (0.2 if bad[q] else 1.0)
                    if t1 is not None:
                        param["value"] = min(param["value"], 2 * t1)
                elif name in ("readout_error", "prob_meas0_prep1", "prob_meas1_prep0"):
                    param["value"] = min(
                        param["value"] * qubit_factor[q, 2] * (4 if bad[q] else 1), 0.5
                    )
        for g, gate in enumerate(gates_of(props)):
            for param in gate["parameters"]:
                param["date"] = stamp
                if param["name"] == "gate_error":
                    param["value"] = min(param["value"] * gate_factor[g], 0.75)
        return props

    # -- status -----------------------------------------------------------

    def maintenance_window(self, moment: datetime) -> tuple[datetime, datetime] | None:
        """Today's maintenance window for this backend, if it has one."""
        day = math.floor(moment.timestamp() / 86_400)
        rng = np.random.default_rng([self.seed, self.index, day % 2**32, 2])
        if rng.random() >= MAINTENANCE_RATE:
            return None
        start = datetime.fromtimestamp(day * 86_400 + rng.uniform(0, 20) * 3600, UTC)
        return start, start + timedelta(hours=float(rng.uniform(0.5, 2.0)))

    def in_maintenance(self, moment: datetime) -> datetime | None:
        """When maintenance ends, if `moment` falls inside a window; else None."""
        window = self.maintenance_window(moment)
        if window and window[0] <= moment < window[1]:
            return window[1]
        return None


def gates_of(props: dict[str, Any]) -> list[dict[str, Any]]:
    return list(props["gates"])


def load_devices(seed: int, clock: Clock | None = None) -> dict[str, Device]:
    """Every backend of `qiskit_ibm_runtime.fake_provider`, by its IBM name.

    With `clock`, calibration dates are shown on its wall clock (as the emulator serves
    them); without, emulated moments are shown as they are.
    """
    from qiskit_ibm_runtime.fake_provider import FakeProviderForBackendV2  # noqa: PLC0415

    devices = {}
    for backend in FakeProviderForBackendV2().backends():
        directory = Path(backend.dirname)
        # IBM's own name (ibm_kyiv, not fake_kyiv): the client reads it from the configuration.
        name = json.loads((directory / backend.conf_filename).read_text())["backend_name"]
        devices[name] = Device(
            name=name,
            directory=directory,
            conf_file=backend.conf_filename,
            props_file=backend.props_filename,
            seed=seed,
            clock=clock,
        )
    return dict(sorted(devices.items()))
