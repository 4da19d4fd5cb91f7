"""Local Aer jobs, run in a process pool so a long simulation never blocks the service.

`run_local` executes in a worker process: it parses the circuits, runs Aer's Sampler (or
Estimator when observables are given) without noise, and returns plain data.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from qjt.contracts import ObservableTerm

DEFAULT_SHOTS = 1024


def run_local(
    circuits: list[str], shots: int | None, observables: list[list[dict[str, Any]]] | None
) -> dict[str, Any]:
    """Counts per circuit, or expectation values with standard errors (in a worker)."""
    from qiskit_aer.primitives import EstimatorV2, SamplerV2  # noqa: PLC0415 (worker only)

    from qjt.circuits import observable, parse_circuit  # noqa: PLC0415

    parsed = [parse_circuit(source) for source in circuits]
    if observables is not None:
        terms = [[ObservableTerm(**t) for t in obs] for obs in observables]
        pubs = [(c, observable(o, c.num_qubits)) for c, o in zip(parsed, terms, strict=True)]
        # Without shots the values are exact; with them, sampled to the matching precision.
        precision = 0.0 if shots is None else shots**-0.5
        result = EstimatorV2().run(pubs, precision=precision).result()
        return {
            "expectation_values": [float(pub.data.evs) for pub in result],
            "standard_errors": [float(pub.data.stds) for pub in result],
        }
    sampler = SamplerV2()
    result = sampler.run(parsed, shots=shots or DEFAULT_SHOTS).result()
    counts: list[dict[str, int]] = []
    for pub in result:
        merged: dict[str, int] = {}
        for name in pub.data:
            for bits, n in pub.data[name].get_counts().items():
                merged[bits] = merged.get(bits, 0) + int(n)
        counts.append(merged)
    return {"counts": counts}


class AerPool:
    """A spawn-started process pool for local jobs."""

    def __init__(self, workers: int) -> None:
        self.pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn")
        )

    async def run(
        self,
        circuits: list[str],
        shots: int | None,
        observables: list[list[ObservableTerm]] | None,
    ) -> dict[str, Any]:
        plain = [[t.model_dump() for t in obs] for obs in observables] if observables else None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, run_local, circuits, shots, plain)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
