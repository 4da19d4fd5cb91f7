"""Queue-wait predictor on emulator-generated history: learned model vs the seed formula.

History: four emulated weeks of eight backends' queues (the emulator's own queue model,
background load following the hour of day, maintenance windows), three of our jobs per
hour per backend, and the poller's view of pending jobs every minute. It is written to
PostgreSQL and read back with the recommender's own history query, then split by time:
the model trains on the first 75% and is tested on the last 25%, with features built only
from what was known when each test job was queued. Repeated for three seeds.

Targets: MAE of the learned median ≤ 0.5 × the seed's MAE; 80% interval coverage 75–85%.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from bench.fleet import store_history
from bench.queue_history import emulated_history, split
from qjt.config import Settings
from qjt.db import create_database, drop_database, migrate, open_pool, with_database
from qjt.devstack import postgres_server_url
from services.recommender.predictor import Predictors, Recent, query_of
from services.recommender.store import wait_history

SEEDS = (11, 12, 13)


async def evaluate(database: str, seed: int) -> dict[str, Any]:
    started = time.perf_counter()
    jobs, statuses = emulated_history(seed=seed, backends=8, days=28, jobs_per_hour=3)
    pool = open_pool(database, 2)
    await pool.open()
    try:
        await store_history(pool, jobs, statuses)
        stored = await wait_history(pool, limit=1_000_000)
    finally:
        await pool.close()
    generated_s = time.perf_counter() - started
    stored.sort(key=lambda j: j.queued_at)
    train, test = split(stored, 0.75)
    started = time.perf_counter()
    predictors = Predictors.train(train)
    train_s = time.perf_counter() - started
    recent = Recent(stored)  # only jobs that started before each query time count
    queries = [query_of(j) for j in test]
    actual = np.array([j.wait_s for j in test])
    started = time.perf_counter()
    learned = predictors.predict(queries, "learned", recent)
    predict_ms = (time.perf_counter() - started) * 1000 / len(queries)
    seeded = predictors.predict(queries, "seed", recent)
    mae_learned = float(np.mean(np.abs(np.array([p.median_s or 0.0 for p in learned]) - actual)))
    mae_seed = float(np.mean(np.abs(np.array([p.median_s or 0.0 for p in seeded]) - actual)))
    inside = [
        p.low_s is not None and p.high_s is not None and p.low_s <= a <= p.high_s
        for p, a in zip(learned, actual, strict=True)
    ]
    return {
        "seed": seed,
        "history_jobs": len(stored),
        "status_rows": len(statuses),
        "train_jobs": len(train),
        "test_jobs": len(test),
        "median_wait_s": float(np.median(actual)),
        "mae_learned_s": mae_learned,
        "mae_seed_s": mae_seed,
        "mae_ratio": mae_learned / mae_seed,
        "coverage_80": float(np.mean(inside)),
        "models": sorted({p.model for p in learned}),
        "generate_and_store_s": generated_s,
        "train_s": train_s,
        "predict_ms_per_job": predict_ms,
    }


async def run() -> list[dict[str, Any]]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(database_url=os.environ.get("QJT_DATABASE_URL") or None)
        server, _origin, _keep = postgres_server_url(settings, Path(tmp) / "pg")
        for seed in SEEDS:
            database = with_database(server, f"qjt_bench_predictor_{uuid.uuid4().hex[:6]}")
            create_database(database)
            try:
                migrate(database)
                results.append(await evaluate(database, seed))
            finally:
                drop_database(database)
    return results


def main() -> None:
    print("Queue-wait predictor (emulated history → PostgreSQL → recommender's query)")
    results = asyncio.run(run())
    for r in results:
        print(
            f"  seed {r['seed']}: {r['history_jobs']:,} jobs (train {r['train_jobs']:,}, "
            f"test {r['test_jobs']:,}, median wait {r['median_wait_s']:.0f} s): "
            f"MAE learned {r['mae_learned_s']:.0f} s vs seed {r['mae_seed_s']:.0f} s "
            f"= {r['mae_ratio']:.2f}× (target ≤ 0.5×); 80% interval covers "
            f"{r['coverage_80']:.1%} (target 75–85%); training {r['train_s']:.1f} s, "
            f"{r['predict_ms_per_job']:.2f} ms per prediction"
        )
    ratio = float(np.mean([r["mae_ratio"] for r in results]))
    coverage = float(np.mean([r["coverage_80"] for r in results]))
    print(f"  mean over seeds: MAE ratio {ratio:.2f}×, coverage {coverage:.1%}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "predictor.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
