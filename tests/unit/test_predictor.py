"""Queue-wait prediction: the seed formula, the fallback, and a model that learns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from bench.queue_history import emulated_history, split
from services.recommender.predictor import (
    HistoryJob,
    Predictors,
    Recent,
    SeedPredictor,
    WaitQuery,
    query_of,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def job(backend: str, queued_min: float, wait_s: float, run_s: float, pending: int) -> HistoryJob:
    queued = T0 + timedelta(minutes=queued_min)
    started = queued + timedelta(seconds=wait_s)
    return HistoryJob(backend, queued, started, started + timedelta(seconds=run_s), pending, 4096)


def test_seed_is_pending_jobs_times_the_backends_mean_run_time() -> None:
    seed = SeedPredictor([job("a", 0, 10, 4, 1), job("a", 5, 10, 6, 1), job("b", 0, 1, 20, 0)])
    assert seed.predict(WaitQuery("a", T0, 10, 4096)).median_s == 50  # 10 × mean(4, 6)
    assert seed.predict(WaitQuery("zzz", T0, 3, 4096)).median_s == 30  # overall mean: 10
    unknown = seed.predict(WaitQuery("a", T0, None, 4096))
    assert unknown.median_s is None and unknown.note


def test_seed_predicts_no_wait_for_an_empty_queue_even_without_history() -> None:
    seed = SeedPredictor([])
    assert seed.predict(WaitQuery("a", T0, 0, 4096)).median_s == 0
    busy = seed.predict(WaitQuery("a", T0, 4, 4096))
    assert busy.median_s is None and busy.note == "no finished job's run time recorded"


def test_a_fallback_that_cannot_answer_says_so() -> None:
    [answer] = Predictors.train([]).predict([WaitQuery("a", T0, 4, 4096)], "learned")
    assert answer.median_s is None and answer.model == "seed"
    assert answer.note == (
        "too little history: 0 finished queue waits recorded, 200 needed; the seed formula "
        "cannot answer either: no finished job's run time recorded"
    )


def test_too_little_history_falls_back_to_the_seed_and_says_so() -> None:
    few = [job("a", i, 60, 5, 3) for i in range(50)]
    predictors = Predictors.train(few, min_jobs=200)
    [answer] = predictors.predict([WaitQuery("a", T0, 4, 4096)], "learned")
    assert answer.model == "seed" and answer.median_s == 20
    assert "too little history: 50 finished queue waits recorded, 200 needed" in (answer.note or "")


def test_recent_throughput_only_looks_at_jobs_that_started_before() -> None:
    recent = Recent([job("a", 0, 60, 5, 5), job("a", 10, 600, 5, 5)])
    started_first = T0 + timedelta(seconds=60)
    nothing_yet = recent.at("a", started_first)  # it starts at that very moment: not before
    assert nothing_yet[1] == 0 and np.isnan(nothing_yet[0])
    per_job, count = recent.at("a", started_first + timedelta(seconds=1))
    assert count == 1 and per_job == 10  # 60 s of wait behind 5 pending → 10 s per queued job
    assert recent.at("a", T0 + timedelta(hours=8))[1] == 0  # outside the six-hour window


def test_the_learned_model_beats_the_seed_on_later_emulated_history() -> None:
    jobs, _statuses = emulated_history(backends=3, days=8, jobs_per_hour=4)
    train, test = split(jobs, 0.75)
    predictors = Predictors.train(train)
    assert predictors.learned is not None and predictors.why_not_learned is None
    recent = Recent(jobs)  # features only use jobs that started before each query
    actual = np.array([j.wait_s for j in test])
    queries = [query_of(j) for j in test]
    learned = predictors.predict(queries, "learned", recent)
    seeded = predictors.predict(queries, "seed", recent)
    assert {p.model for p in learned} == {"learned"}
    mae_learned = np.mean(np.abs([p.median_s for p in learned] - actual))
    mae_seed = np.mean(np.abs([p.median_s or 0.0 for p in seeded] - actual))
    assert mae_learned < 0.7 * mae_seed, (mae_learned, mae_seed)
    inside = [p.low_s <= a <= p.high_s for p, a in zip(learned, actual, strict=True)]
    assert 0.65 <= np.mean(inside) <= 0.95
    assert all(p.low_s <= p.median_s <= p.high_s for p in learned)  # type: ignore[operator]
