"""Simulated queues: background load makes waits grow with the queue; seeds reproduce."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime

import numpy as np

from services.emulator.queues import BackendQueue

DAY0 = datetime(2026, 11, 2, tzinfo=UTC).timestamp()


def trace(seed: int, name: str = "ibm_kyiv") -> list[int]:
    queue = BackendQueue(name, seed, DAY0)
    return [queue.pending(DAY0 + minute * 60) for minute in range(0, 24 * 60, 10)]


def test_a_fixed_seed_reproduces_the_same_trace() -> None:
    assert trace(7) == trace(7)
    assert trace(7) != trace(8)
    assert trace(7, "ibm_kyiv") != trace(7, "ibm_fez")


def test_backends_differ_in_load_and_load_varies_by_hour() -> None:
    kyiv, fez = BackendQueue("ibm_kyiv", 7, DAY0), BackendQueue("ibm_fez", 7, DAY0)
    assert (kyiv.mean_service_s, kyiv.utilisation) != (fez.mean_service_s, fez.utilisation)
    assert kyiv.rate(DAY0 + 15 * 3600) > 2 * kyiv.rate(DAY0 + 3 * 3600)  # afternoon vs night


def test_mean_wait_grows_with_pending_jobs() -> None:
    pending_at_submit: list[int] = []
    waits: list[float] = []
    for seed in range(3):
        queue = BackendQueue("ibm_sherbrooke", seed, DAY0)
        probes = []
        for k in range(1, 300):
            at = DAY0 + k * 577.0  # every ~10 minutes for two days
            pending_at_submit.append(queue.pending(at))
            probes.append(queue.submit(f"probe-{seed}-{k}", 1.0, at))
        queue.advance(DAY0 + 4 * 86_400)
        waits += [p.start_s - p.arrival_s for p in probes if p.start_s is not None]
    assert len(waits) == len(pending_at_submit)
    assert max(pending_at_submit) >= 5, "background load should build real queues"
    short = [w for p, w in zip(pending_at_submit, waits, strict=True) if p <= 1]
    long = [w for p, w in zip(pending_at_submit, waits, strict=True) if p >= 4]
    assert statistics.mean(long) > 3 * statistics.mean(short)
    assert np.corrcoef(pending_at_submit, waits)[0, 1] > 0.6


def test_cancelled_job_leaves_the_queue_and_the_next_one_starts() -> None:
    queue = BackendQueue("ibm_kyiv", 1, DAY0)
    queue.advance(DAY0 + 3600)
    first = queue.submit("a", 5.0, DAY0 + 3600)
    second = queue.submit("b", 5.0, DAY0 + 3600)
    queue.cancel(first, DAY0 + 3600)
    assert first not in queue.waiting and queue.running is not first
    queue.advance(DAY0 + 86_400)
    assert first.start_s is None
    assert second.start_s is not None and second.end_s == second.start_s + 5.0


def test_nothing_starts_during_maintenance() -> None:
    window = (DAY0 + 3600, DAY0 + 7200)

    def maintenance_end(at: float) -> float | None:
        return window[1] if window[0] <= at < window[1] else None

    queue = BackendQueue("ibm_kyiv", 1, DAY0, maintenance_end)
    queue.advance(window[0] + 10)
    queue.waiting.clear()
    queue.running = None
    item = queue.submit("during", 1.0, window[0] + 10)
    assert item.start_s == window[1]


def test_a_held_queue_starts_nothing_until_released() -> None:
    held = [True]
    queue = BackendQueue("ibm_kyiv", 1, DAY0, held=lambda: held[0])
    queue.advance(DAY0 + 600)
    queue.waiting.clear()
    queue.running = None
    ours = queue.submit("ours", 5.0, DAY0 + 600)
    assert ours.start_s is None and queue.pending(DAY0 + 7200) >= 1
    held[0] = False
    queue.advance(DAY0 + 10 * 86_400)  # the next arrival starts the line moving again
    assert ours.start_s is not None and ours.end_s is not None
