"""Wiring for the recommender: `python -m services.recommender`.

Answers `qjt.rpc.recommend` and `qjt.rpc.predict` in the `recommender` queue group
(replicas share requests), transpiles in a pool of worker processes, and retrains the
queue-wait predictor from the database every `QJT_PREDICTOR_RETRAIN_S`.
"""

from __future__ import annotations

from qjt.contracts import Message, PredictRequest, RecommendRequest
from qjt.service import ServiceContext, run_service
from services.recommender.engine import Engine, worker_pool


async def start(ctx: ServiceContext) -> None:
    """Start the workers, the first training round and the two request handlers."""
    assert ctx.pool is not None
    executor = worker_pool(ctx.settings.recommender_workers)
    ctx.on_stop(lambda: executor.shutdown(wait=False, cancel_futures=True))
    engine = Engine(ctx.settings, ctx.pool, executor)
    await engine.warm_up()
    ctx.spawn(engine.retrain_forever(ctx.stopping), name="predictor-training")
    ctx.checks["predictor_trained"] = lambda: engine.trained_at is not None

    async def on_recommend(request: Message) -> Message:
        if not isinstance(request, RecommendRequest):
            raise TypeError(f"expected a recommend request, got {request.type}")
        return await engine.recommend(request)

    async def on_predict(request: Message) -> Message:
        if not isinstance(request, PredictRequest):
            raise TypeError(f"expected a predict request, got {request.type}")
        return await engine.predict(request)

    await ctx.bus.serve(RecommendRequest.subject_prefix, "recommender", on_recommend)
    await ctx.bus.serve(PredictRequest.subject_prefix, "recommender", on_predict)


if __name__ == "__main__":
    run_service("recommender", start, needs_db=True)
