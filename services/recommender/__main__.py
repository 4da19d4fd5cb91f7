"""Wiring for the recommender: `python -m services.recommender`.

Answers `qjt.rpc.recommend` in the `recommender` queue group (replicas share requests).
"""

from __future__ import annotations

from qjt.contracts import Message, RecommendRequest
from qjt.service import ServiceContext, run_service
from services.recommender.handlers import recommend
from services.recommender.store import backend_states


async def start(ctx: ServiceContext) -> None:
    """Serve recommendations from the latest recorded backend state."""
    assert ctx.pool is not None
    pool = ctx.pool

    async def on_recommend(request: Message) -> Message:
        if not isinstance(request, RecommendRequest):
            raise TypeError(f"expected a recommend request, got {request.type}")
        return recommend(await backend_states(pool, request.backends), request)

    await ctx.bus.serve(RecommendRequest.subject_prefix, "recommender", on_recommend)


if __name__ == "__main__":
    run_service("recommender", start, needs_db=True)
