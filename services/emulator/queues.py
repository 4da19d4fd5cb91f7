"""Simulated backend queues: other users' load plus our jobs, in emulated seconds.

Each backend is one FIFO server. Background jobs arrive as a Poisson process whose rate
follows the hour of day (busiest mid-afternoon UTC) and whose level, like the mean
service time, differs per backend. Nothing starts during a maintenance window. The
simulation advances lazily to the time asked about, and is a pure function of the seed
and the backend name for background load, so a fixed seed reproduces the same trace.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from services.emulator.devices import Device, stable_index


@dataclass
class QueueItem:
    """One job in a queue: background (job_id None) or ours."""

    arrival_s: float
    service_s: float
    job_id: str | None = None
    start_s: float | None = None
    end_s: float | None = None


MaintenanceEnd = Callable[[float], float | None]


def job_service_s(total_shots: int) -> float:
    """How long one of our jobs occupies the backend: a fixed cost plus its shots."""
    return 2.0 + total_shots * 2e-4


class BackendQueue:
    """A FIFO queue for one backend, advanced in emulated POSIX seconds."""

    def __init__(
        self,
        name: str,
        seed: int,
        start_s: float,
        maintenance_end: MaintenanceEnd | None = None,
        held: Callable[[], bool] | None = None,
    ) -> None:
        shape = np.random.default_rng([seed, stable_index(name), 3])
        self.mean_service_s = float(shape.uniform(20, 90))
        self.utilisation = float(shape.uniform(0.45, 0.9))
        self.base_rate = self.utilisation / self.mean_service_s  # arrivals per second
        self._rng = np.random.default_rng([seed, stable_index(name), 4])
        self._maintenance_end = maintenance_end or (lambda _t: None)
        self._held = held or (lambda: False)
        self.now_s = start_s
        self.waiting: deque[QueueItem] = deque()
        self.running: QueueItem | None = None
        self._next_arrival_s = start_s + self._gap(start_s)

    def rate(self, at_s: float) -> float:
        """Background arrivals per second at emulated time `at_s`."""
        hour = datetime.fromtimestamp(at_s, UTC).hour + (at_s % 3600) / 3600
        return self.base_rate * (1 + 0.6 * math.sin(2 * math.pi * (hour - 9) / 24))

    def _gap(self, at_s: float) -> float:
        return float(self._rng.exponential(1 / max(self.rate(at_s), 1e-9)))

    def _service(self) -> float:
        sigma = 0.6
        mu = math.log(self.mean_service_s) - sigma**2 / 2
        return float(self._rng.lognormal(mu, sigma))

    def _start_next(self, at_s: float) -> None:
        if self.running is not None or not self.waiting or self._held():
            return
        item = self.waiting.popleft()
        resume = self._maintenance_end(at_s)
        item.start_s = max(at_s, resume) if resume else at_s
        item.end_s = item.start_s + item.service_s
        self.running = item

    def advance(self, to_s: float) -> None:
        """Play arrivals, starts and finishes up to `to_s`."""
        while True:
            finish = self.running.end_s if self.running and self.running.end_s else math.inf
            arrival = self._next_arrival_s
            if min(finish, arrival) > to_s:
                break
            if finish <= arrival:
                self.now_s = finish
                self.running = None
                self._start_next(finish)
            else:
                self.now_s = arrival
                self.waiting.append(QueueItem(arrival, self._service()))
                self._next_arrival_s = arrival + self._gap(arrival)
                self._start_next(arrival)
        self.now_s = max(self.now_s, to_s)

    def submit(self, job_id: str, service_s: float, at_s: float) -> QueueItem:
        """Put one of our jobs at the back of the queue."""
        self.advance(at_s)
        item = QueueItem(at_s, service_s, job_id)
        self.waiting.append(item)
        self._start_next(at_s)
        return item

    def cancel(self, item: QueueItem, at_s: float) -> None:
        """Take a job out of the queue, or stop it if it is running."""
        self.advance(at_s)
        if item in self.waiting:
            self.waiting.remove(item)
        elif self.running is item:
            item.end_s = at_s
            self.running = None
            self._start_next(at_s)

    def pending(self, at_s: float) -> int:
        """Jobs waiting or running at `at_s` (IBM's `pending_jobs`)."""
        self.advance(at_s)
        return len(self.waiting) + (1 if self.running else 0)


def queue_for(
    device: Device, start_s: float, held: Callable[[], bool] | None = None
) -> BackendQueue:
    """The queue of an emulated backend from `start_s` on, paused in its maintenance windows."""

    def maintenance_end(at_s: float) -> float | None:
        end = device.in_maintenance(datetime.fromtimestamp(at_s, UTC))
        return end.timestamp() if end else None

    return BackendQueue(device.name, device.seed, start_s, maintenance_end, held)
