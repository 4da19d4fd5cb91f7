"""Ranking: the hard limits, the seed formula, and the ESP strategy's preferences."""

from __future__ import annotations

from qjt.contracts import RecommendRequest
from services.recommender.esp import LayoutScore
from services.recommender.handlers import BackendState, Candidate, rank, recommend, seed_score
from services.recommender.predictor import Prediction


def test_seed_score_is_the_original_formula() -> None:
    assert seed_score(BackendState("a", True, pending_jobs=0, num_qubits=127)) == 120
    assert seed_score(BackendState("b", True, pending_jobs=10, num_qubits=5)) == 81
    assert seed_score(BackendState("c", True, pending_jobs=40, num_qubits=27)) == 55.4
    assert seed_score(BackendState("s", True, 0, 32, simulator=True)) == 116.4


def test_ranking_respects_size_operational_state_and_candidates() -> None:
    backends = [
        BackendState("big_busy", True, pending_jobs=20, num_qubits=127),
        BackendState("big_idle", True, pending_jobs=0, num_qubits=127),
        BackendState("down", False, pending_jobs=0, num_qubits=156),
        BackendState("small", True, pending_jobs=0, num_qubits=5),
        BackendState("not_yours", True, pending_jobs=0, num_qubits=133),
    ]
    request = RecommendRequest(
        request_id="r",
        user_id="u",
        num_qubits=7,
        backends=["big_busy", "big_idle", "down", "small"],
        top_n=3,
    )
    reply = recommend(backends, request)
    assert [r.backend for r in reply.recommendations] == ["big_idle", "big_busy"]
    assert reply.recommendations[0].reasons == ["0 pending jobs", "127 qubits"]
    none = recommend(backends, request.model_copy(update={"num_qubits": 500}))
    assert none.recommendations == [] and none.error


def esp_candidate(name: str, esp: float, wait_s: float, pending: int = 0) -> Candidate:
    score = LayoutScore(name, "v1", esp, 1 - esp, 0.0, 0.0, 1.0, (0, 1), 1, 3)
    return Candidate(
        BackendState(name, True, pending, 27), score, Prediction(wait_s, None, None, "learned")
    )


def test_preference_decides_between_quality_and_wait() -> None:
    candidates = [
        esp_candidate("precise_but_busy", 0.9, wait_s=3 * 3600),
        esp_candidate("quick_but_noisy", 0.5, wait_s=60),
        esp_candidate("middle", 0.8, wait_s=900),
    ]
    request = RecommendRequest(request_id="r", user_id="u", num_qubits=2, top_n=3)

    def order(preference: str) -> list[str]:
        asked = request.model_copy(update={"preference": preference})
        return [r.backend for r in rank(candidates, asked, balance_wait_s=1800).recommendations]

    assert order("best_quality") == ["precise_but_busy", "middle", "quick_but_noisy"]
    assert order("fastest") == ["quick_but_noisy", "middle", "precise_but_busy"]
    assert order("balanced")[0] == "middle"  # 0.8 × 1800/2700 beats 0.5 × 1800/1860
    top = rank(candidates, request, 1800).recommendations[0]
    assert top.estimated_success_probability == 0.8 and top.predicted_wait_s == 900
    assert any("15 min" in why for why in top.reasons)


def test_an_unscored_backend_ranks_after_scored_ones_and_says_why() -> None:
    unscored = Candidate(BackendState("late", True, 0, 127), None, None, "not scored in time")
    request = RecommendRequest(request_id="r", user_id="u", num_qubits=2, top_n=3)
    reply = rank([unscored, esp_candidate("scored", 0.3, 600)], request, 1800)
    assert [r.backend for r in reply.recommendations] == ["scored", "late"]
    assert "not scored in time" in reply.recommendations[1].reasons[0]
