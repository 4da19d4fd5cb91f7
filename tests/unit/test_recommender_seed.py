"""The seed recommender: its formula and the hard limits before it."""

from __future__ import annotations

from qjt.contracts import RecommendRequest
from services.recommender.handlers import BackendState, recommend, seed_score


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
