"""The recommender as its own process on real NATS and PostgreSQL.

Backends are the emulator's devices as the poller reports them, stored by the recorder's
own code: configuration, drifted calibration and status at one moment.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench.fleet import EmulatedBackend, fleet, store_fleet, store_history
from bench.queue_history import emulated_history
from qjt.bus import Bus
from qjt.contracts import (
    BackendCalibration,
    GateCalibration,
    PredictReply,
    PredictRequest,
    QubitCalibration,
    RecommendReply,
    RecommendRequest,
)
from qjt.db import migrate, open_pool
from qjt.devstack import NatsServer
from services.recommender.esp import ghz_qasm
from tests.conftest import make_settings
from tests.helpers.stack import ServiceStack

SEED = 11
Recommender = tuple[Bus, str, list[EmulatedBackend]]
MOMENT = datetime(2026, 11, 20, 12, tzinfo=UTC)
MEDIUM = ["ibm_algiers", "ibm_geneva", "ibm_hanoi", "ibmq_kolkata", "ibmq_mumbai"]
SMALL = "ibm_lagos"  # 7 qubits
DOWN = "ibmq_montreal"
NOT_YOURS = "ibmq_toronto"


@pytest.fixture
async def recommender(
    make_database: Callable[[], str], tmp_path: Path
) -> AsyncIterator[tuple[Bus, str, list[EmulatedBackend]]]:
    database = make_database()
    migrate(database)
    backends = fleet(SEED, MOMENT, names=[*MEDIUM, SMALL, DOWN, NOT_YOURS])
    pool = open_pool(database, 2)
    await pool.open()
    pending = {name: 3 * i for i, name in enumerate(MEDIUM)}
    await store_fleet(pool, backends, MOMENT, pending=pending, down=[DOWN])
    await pool.close()
    nats = NatsServer(tmp_path / "nats").start()
    stack = ServiceStack(
        nats=nats,
        database=database,
        ibm_url="http://127.0.0.1:9",
        log_dir=tmp_path / "logs",
        extra_env={"QJT_PREDICTOR_RETRAIN_S": "1", "QJT_RECOMMENDER_WORKERS": "2"},
        services=("recommender",),
    )
    bus = await Bus.connect(make_settings(nats_url=nats.url))
    try:
        yield bus, database, backends
    finally:
        await bus.close()
        stack.stop()
        nats.stop()


def request(**fields: object) -> RecommendRequest:
    base: dict[str, object] = {
        "request_id": f"r-{time.monotonic_ns()}",
        "user_id": "u",
        "backends": [*MEDIUM, SMALL, DOWN],
        "top_n": 10,
    }
    return RecommendRequest(**{**base, **fields})


async def test_both_strategies_respect_the_hard_limits(recommender: Recommender) -> None:
    bus, _db, _backends = recommender
    circuit = ghz_qasm(8)
    for strategy in ("esp", "seed"):
        reply = await bus.request(
            request(strategy=strategy, circuit=circuit, num_qubits=8, deadline_s=20),
            RecommendReply,
            timeout_s=30,
        )
        names = [r.backend for r in reply.recommendations]
        assert reply.strategy == strategy and reply.error is None
        assert sorted(names) == sorted(MEDIUM), (strategy, names)  # not small, down or not yours
    esp = await bus.request(request(circuit=circuit, deadline_s=20), RecommendReply, 30)
    for r in esp.recommendations:
        assert r.estimated_success_probability is not None
        assert 0 < r.estimated_success_probability < 1
        assert len(r.layout) == 8 and set(r.error_budget) == {"gates", "readout", "decoherence"}
        assert any("estimated success probability" in why for why in r.reasons)
        if r.backend == MEDIUM[0]:  # nothing pending: the seed formula needs no run time
            assert r.predicted_wait_s == 0
        else:  # no history of ours yet, so no run time either
            assert r.predicted_wait_s is None
            assert any("too little history" in why for why in r.reasons)
    best = esp.recommendations
    assert [r.score for r in best] == sorted((r.score for r in best), reverse=True)
    quality = await bus.request(
        request(circuit=circuit, preference="best_quality"), RecommendReply, 30
    )
    esps = [r.estimated_success_probability or 0 for r in quality.recommendations]
    assert esps == sorted(esps, reverse=True)
    seed = await bus.request(request(strategy="seed", num_qubits=8), RecommendReply, 30)
    by_pending = [r.backend for r in seed.recommendations]
    assert by_pending[0] == MEDIUM[0]  # no pending jobs: the seed formula's favourite
    too_big = await bus.request(request(num_qubits=200), RecommendReply, 30)
    assert too_big.recommendations == [] and "large enough" in (too_big.error or "")


def degraded(calibration: BackendCalibration, at: datetime, factor: float) -> BackendCalibration:
    """The same device `factor` times worse in readout and gate errors, recalibrated `at`."""
    return BackendCalibration(
        backend=calibration.backend,
        calibrated_at=at,
        qubits=[
            QubitCalibration(
                qubit=q.qubit,
                t1_us=(q.t1_us or 100) / factor,
                t2_us=(q.t2_us or 100) / factor,
                readout_error=min((q.readout_error or 0.01) * factor, 0.5),
            )
            for q in calibration.qubits
        ],
        gates=[
            GateCalibration(
                gate=g.gate,
                qubits=g.qubits,
                error=min((g.error or 0.0) * factor, 0.75),
                duration_ns=g.duration_ns,
            )
            for g in calibration.gates
        ],
    )


async def test_a_backend_whose_calibration_degrades_drops_in_rank(recommender: Recommender) -> None:
    bus, database, backends = recommender
    ask = request(circuit=ghz_qasm(6), preference="best_quality", backends=MEDIUM)
    before = await bus.request(ask, RecommendReply, 30)
    top = before.recommendations[0]
    assert top.estimated_success_probability is not None
    pool = open_pool(database, 2)
    await pool.open()
    worse = next(b for b in backends if b.config.backend == top.backend)
    later = MOMENT + timedelta(hours=1)
    await store_fleet(pool, [replace(worse, calibration=degraded(worse.calibration, later, 6))],
                      later)  # fmt: skip
    await pool.close()
    after = await bus.request(ask.model_copy(update={"request_id": "again"}), RecommendReply, 30)
    ranked = [r.backend for r in after.recommendations]
    now = next(r for r in after.recommendations if r.backend == top.backend)
    assert ranked.index(top.backend) > 0, ranked
    assert (now.estimated_success_probability or 0) < top.estimated_success_probability - 0.2


async def test_a_deadline_is_kept_and_later_asks_get_the_full_ranking(
    recommender: Recommender,
) -> None:
    bus, _db, _backends = recommender
    circuit = ghz_qasm(20)
    started = time.monotonic()
    quick = await bus.request(
        request(circuit=circuit, backends=MEDIUM, deadline_s=0.05), RecommendReply, 30
    )
    assert time.monotonic() - started < 1.0
    assert len(quick.recommendations) == len(MEDIUM)
    unscored = [r for r in quick.recommendations if r.estimated_success_probability is None]
    assert unscored and "deadline" in " ".join(unscored[0].reasons)

    async def all_scored() -> RecommendReply:
        while True:
            full = await bus.request(request(circuit=circuit, backends=MEDIUM), RecommendReply, 30)
            if all(r.estimated_success_probability for r in full.recommendations):
                return full
            await asyncio.sleep(0.2)

    full = await asyncio.wait_for(all_scored(), 30)
    assert len(full.recommendations) == len(MEDIUM)


async def test_predictions_fall_back_to_the_seed_then_learn_from_history(
    recommender: Recommender,
) -> None:
    bus, database, _backends = recommender
    ask = PredictRequest(request_id="p1", backend=MEDIUM[0], num_circuits=2, shots=4096)
    first = await bus.request(ask, PredictReply, 30)
    assert first.model == "seed" and "too little history" in (first.note or "")
    jobs, statuses = emulated_history(seed=SEED, names=MEDIUM[:2], days=4, jobs_per_hour=4)
    history_backends = sorted({j.backend for j in jobs})
    pool = open_pool(database, 2)
    await pool.open()
    await store_history(pool, jobs, statuses)
    await pool.close()
    target = history_backends[0]

    async def learned() -> PredictReply:
        while True:
            reply = await bus.request(
                PredictRequest(request_id=f"p-{time.monotonic_ns()}", backend=target),
                PredictReply,
                30,
            )
            assert reply.error is None
            if reply.model == "learned":
                return reply
            await asyncio.sleep(0.5)

    reply = await asyncio.wait_for(learned(), 60)
    assert reply.note is None and reply.predicted_wait_s is not None
    assert reply.wait_low_s is not None and reply.wait_high_s is not None
    assert reply.wait_low_s <= reply.predicted_wait_s <= reply.wait_high_s
    assert reply.predicted_start_at is not None
    expected_start = datetime.now(UTC) + timedelta(seconds=reply.predicted_wait_s)
    assert abs((reply.predicted_start_at - expected_start).total_seconds()) < 30
    seed = await bus.request(
        PredictRequest(request_id="p-seed", backend=target, strategy="seed"), PredictReply, 30
    )
    assert seed.model == "seed" and seed.wait_low_s is None
    unknown = await bus.request(PredictRequest(request_id="p-x", backend="nope"), PredictReply, 30)
    assert unknown.error and "nope" in unknown.error
