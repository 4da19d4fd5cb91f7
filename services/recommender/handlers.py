"""How the recommender ranks backends. Plain functions over backend state, no I/O.

`seed` is the original system's formula, kept as the baseline:
score = 100 − min(2 · pending_jobs, 50) + 10 if simulator + min(num_qubits / 5, 20).
Hard limits come first: a backend must be operational, big enough for the circuit and
one of the candidates the caller may use.
"""

from __future__ import annotations

from dataclasses import dataclass

from qjt.contracts import BackendScore, RecommendReply, RecommendRequest


@dataclass(frozen=True)
class BackendState:
    """What the recommender knows of a backend now."""

    name: str
    operational: bool
    pending_jobs: int
    num_qubits: int
    simulator: bool = False


def seed_score(backend: BackendState) -> float:
    """The seed's score: fewer pending jobs, simulators and size score higher."""
    score = 100.0 - min(2 * backend.pending_jobs, 50)
    if backend.simulator:
        score += 10
    return score + min(backend.num_qubits / 5, 20)


def eligible(backends: list[BackendState], request: RecommendRequest) -> list[BackendState]:
    """Backends that pass the hard limits."""
    allowed = set(request.backends)
    return [
        b
        for b in backends
        if b.operational
        and b.num_qubits >= request.num_qubits
        and (not allowed or b.name in allowed)
    ]


def recommend(backends: list[BackendState], request: RecommendRequest) -> RecommendReply:
    """The top `request.top_n` backends, best first, each with its reasons."""
    ranked = sorted(eligible(backends, request), key=lambda b: (-seed_score(b), b.name))
    scores = [
        BackendScore(
            backend=b.name,
            score=round(seed_score(b), 3),
            reasons=[
                f"{b.pending_jobs} pending jobs",
                f"{b.num_qubits} qubits",
                *(["simulator"] if b.simulator else []),
            ],
        )
        for b in ranked[: request.top_n]
    ]
    return RecommendReply(
        request_id=request.request_id,
        strategy="seed",
        recommendations=scores,
        error=None if scores else "no operational backend is large enough",
    )
