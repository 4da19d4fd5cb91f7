"""How the recommender ranks backends. Plain functions over backend state, no I/O.

Hard limits come first: a backend must be operational, big enough for the circuit and
one of the candidates the caller may use. Then one of two strategies:

- `seed`, the original system's formula, kept as the baseline:
  score = 100 − min(2 · pending_jobs, 50) + 10 if simulator + min(num_qubits / 5, 20).
- `esp`: the circuit's estimated success probability on each backend (`esp.py`) and the
  predicted queue wait (`predictor.py`), combined by the caller's preference, with τ the
  configured balance wait:
  best_quality = 100 · ESP; fastest = 100 · τ / (τ + wait) + ESP;
  balanced = 100 · ESP · τ / (τ + wait).
  A backend whose ESP is unknown (no calibration, or not scored by the deadline) counts
  as ESP 0, so it ranks after every scored one unless the caller wants the fastest.
"""

from __future__ import annotations

from dataclasses import dataclass

from qjt.contracts import BackendScore, Preference, RecommendReply, RecommendRequest
from services.recommender.esp import LayoutScore
from services.recommender.predictor import Prediction


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


@dataclass(frozen=True)
class Candidate:
    """An eligible backend with what is known of the circuit on it."""

    state: BackendState
    esp: LayoutScore | None = None
    wait: Prediction | None = None
    note: str | None = None  # why there is no ESP


def combined_score(
    esp: float | None, wait_s: float | None, preference: Preference, balance_wait_s: float
) -> float:
    """One number per backend: higher is better (formulas in the module docstring)."""
    quality = esp or 0.0
    wait = balance_wait_s if wait_s is None else wait_s
    speed = balance_wait_s / (balance_wait_s + wait)
    if preference == "best_quality":
        return 100 * quality
    if preference == "fastest":
        return 100 * speed + quality
    return 100 * quality * speed


def rank(
    candidates: list[Candidate], request: RecommendRequest, balance_wait_s: float
) -> RecommendReply:
    """The `esp` strategy's top `request.top_n`, best first, each with its reasons."""

    def key(c: Candidate) -> tuple[float, str]:
        wait_s = c.wait.median_s if c.wait else None
        esp = c.esp.esp if c.esp else None
        return -combined_score(esp, wait_s, request.preference, balance_wait_s), c.state.name

    ranked = sorted(candidates, key=key)[: request.top_n]
    scores = [_explain(c, -key(c)[0]) for c in ranked]
    return RecommendReply(
        request_id=request.request_id,
        strategy="esp",
        recommendations=scores,
        error=None if scores else "no operational backend is large enough",
    )


def _explain(c: Candidate, score: float) -> BackendScore:
    reasons: list[str] = []
    budget: dict[str, float] = {}
    layout: list[int] = []
    if c.esp is not None:
        layout = list(c.esp.layout)
        budget = {
            "gates": round(c.esp.gate_error, 6),
            "readout": round(c.esp.readout_error, 6),
            "decoherence": round(c.esp.decoherence_error, 6),
        }
        reasons += [
            f"estimated success probability {c.esp.esp:.3f} on qubits {layout}",
            c.esp.budget(),
            f"{c.esp.two_qubit_gates} two-qubit gates, depth {c.esp.depth}",
        ]
    else:
        reasons.append(f"success probability unknown: {c.note or 'no calibration'}")
    wait = c.wait
    if wait is not None and wait.median_s is not None:
        interval = (
            f" (80% between {_duration(wait.low_s)} and {_duration(wait.high_s)})"
            if wait.low_s is not None and wait.high_s is not None
            else ""
        )
        reasons.append(f"predicted wait {_duration(wait.median_s)}{interval}, {wait.model} model")
    elif wait is not None and wait.note:
        reasons.append(f"wait unknown: {wait.note}")
    reasons.append(f"{c.state.pending_jobs} pending jobs")
    return BackendScore(
        backend=c.state.name,
        score=round(score, 3),
        estimated_success_probability=round(c.esp.esp, 6) if c.esp else None,
        predicted_wait_s=round(wait.median_s, 1) if wait and wait.median_s is not None else None,
        wait_low_s=round(wait.low_s, 1) if wait and wait.low_s is not None else None,
        wait_high_s=round(wait.high_s, 1) if wait and wait.high_s is not None else None,
        layout=layout,
        error_budget=budget,
        reasons=reasons,
    )


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
