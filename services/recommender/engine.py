"""The recommender's state and its two answers: rankings and predicted waits.

ESP needs a transpilation per backend, which is CPU work: it runs in a pool of worker
processes, and results are cached by (backend, calibration version, circuit hash), so a
circuit asked about again under the same calibration costs nothing. A request with a
deadline is answered by then with what is scored; unfinished scorings carry on and fill
the cache for the next ask. The predictor retrains from the database in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
from collections import OrderedDict
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from psycopg_pool import AsyncConnectionPool

from qjt.circuits import CircuitError, parse_circuit
from qjt.config import Settings
from qjt.contracts import (
    DEFAULT_SHOTS,
    PredictReply,
    PredictRequest,
    RecommendReply,
    RecommendRequest,
)
from services.recommender import esp as esp_module
from services.recommender.esp import DeviceCalibration, LayoutScore, NotSchedulable, circuit_key
from services.recommender.handlers import BackendState, Candidate, eligible, rank, recommend
from services.recommender.predictor import (
    RECENT_WINDOW,
    Prediction,
    Predictors,
    Recent,
    WaitQuery,
)
from services.recommender.store import (
    backend_states,
    calibration_versions,
    device_calibration,
    wait_history,
)

log = logging.getLogger(__name__)
ESP_CACHE_SIZE = 20_000
DEVICE_CACHE_SIZE = 256

ScoreKey = tuple[str, str, str]  # backend, calibration version, circuit hash


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """Processes for transpiling (spawned: no inherited event loop or connections)."""
    count = workers or os.cpu_count() or 1
    return ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("spawn"))


@dataclass
class Engine:
    """Rankings and predictions from the database's latest state."""

    settings: Settings
    pool: AsyncConnectionPool
    executor: Executor
    predictors: Predictors = field(default_factory=lambda: Predictors.train([]))
    trained_at: datetime | None = None
    _devices: OrderedDict[tuple[str, datetime, str], DeviceCalibration] = field(
        default_factory=OrderedDict
    )
    _scores: OrderedDict[ScoreKey, LayoutScore | str] = field(default_factory=OrderedDict)
    _scoring: dict[ScoreKey, asyncio.Future[LayoutScore | str]] = field(default_factory=dict)

    async def warm_up(self) -> None:
        """Start every worker process and import the transpiler there."""
        loop = asyncio.get_running_loop()
        count = getattr(self.executor, "_max_workers", 1)
        await asyncio.gather(
            *(loop.run_in_executor(self.executor, esp_module.warm_up) for _ in range(count))
        )

    # -- predictions ------------------------------------------------------

    async def retrain(self) -> None:
        """Learn again from the recorded history (training runs in a thread)."""
        jobs = await wait_history(self.pool, limit=self.settings.predictor_history_jobs)
        self.predictors = await asyncio.to_thread(
            Predictors.train, jobs, self.settings.predictor_min_jobs
        )
        self.trained_at = datetime.now(UTC)
        learned = self.predictors.learned
        log.info(
            "predictor trained",
            extra={
                "history_jobs": len(jobs),
                "model": "learned" if learned else "seed",
                "note": self.predictors.why_not_learned,
            },
        )

    async def retrain_forever(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self.retrain()
            except Exception:  # a failed round keeps the previous model; try again later
                log.exception("predictor retraining failed; keeping the previous model")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.settings.predictor_retrain_s)

    async def waits(
        self, states: list[BackendState], size: float, strategy: str
    ) -> dict[str, Prediction]:
        """Predicted wait for a job of `size` shots on each backend, from now."""
        now = datetime.now(UTC)
        recent = Recent(
            await wait_history(
                self.pool,
                limit=self.settings.predictor_history_jobs,
                backends=[s.name for s in states],
                started_after=now - RECENT_WINDOW,
            )
        )
        queries = [WaitQuery(s.name, now, s.pending_jobs, size, s.operational) for s in states]
        predictions = self.predictors.predict(queries, strategy, recent)
        return {q.backend: p for q, p in zip(queries, predictions, strict=True)}

    async def predict(self, request: PredictRequest) -> PredictReply:
        states = await backend_states(self.pool, [request.backend])
        if not states:
            return PredictReply(
                request_id=request.request_id,
                backend=request.backend,
                error=f"no status recorded for backend {request.backend!r}",
            )
        size = request.num_circuits * (request.shots or DEFAULT_SHOTS)
        wait = (await self.waits(states, size, request.strategy))[request.backend]
        start = (
            datetime.now(UTC) + timedelta(seconds=wait.median_s)
            if wait.median_s is not None
            else None
        )
        return PredictReply(
            request_id=request.request_id,
            backend=request.backend,
            predicted_wait_s=wait.median_s,
            wait_low_s=wait.low_s,
            wait_high_s=wait.high_s,
            predicted_start_at=start,
            pending_jobs=states[0].pending_jobs,
            model="learned" if wait.model == "learned" else "seed",
            note=wait.note,
        )

    # -- rankings ---------------------------------------------------------

    async def recommend(self, request: RecommendRequest) -> RecommendReply:
        started = asyncio.get_running_loop().time()
        states = await backend_states(self.pool, request.backends)
        if request.strategy == "seed":
            return recommend(states, request)
        qasm = request.circuit or esp_module.ghz_qasm(request.num_qubits)
        try:
            width = parse_circuit(qasm).num_qubits
        except CircuitError as exc:
            return _failed(request, f"invalid circuit: {exc}")
        sized = request.model_copy(update={"num_qubits": max(request.num_qubits, width)})
        chosen = eligible(states, sized)
        if not chosen:
            return _failed(request, "no operational backend is large enough")
        deadline = None
        if request.deadline_s is not None:
            deadline = started + request.deadline_s
        scores, waits = await asyncio.gather(
            self.scores(qasm, [s.name for s in chosen], deadline),
            self.waits(chosen, float(request.shots or DEFAULT_SHOTS), "learned"),
        )
        candidates = []
        for state in chosen:
            found = scores.get(state.name)
            score = found if isinstance(found, LayoutScore) else None
            note = found if isinstance(found, str) else None
            candidates.append(Candidate(state, score, waits.get(state.name), note))
        return rank(candidates, sized, self.settings.recommender_balance_wait_s)

    async def scores(
        self, qasm: str, names: list[str], deadline: float | None
    ) -> dict[str, LayoutScore | str]:
        """ESP per backend (or why there is none), within the deadline if one is given."""
        circuit = circuit_key(qasm)
        versions = await calibration_versions(self.pool, names)
        out: dict[str, LayoutScore | str] = {}
        waiting: dict[str, asyncio.Future[LayoutScore | str]] = {}
        for name in names:
            if name not in versions:
                out[name] = "no calibration recorded"
                continue
            device = await self._device(name, *versions[name])
            key = (name, device.version, circuit)
            if key in self._scores:
                self._scores.move_to_end(key)
                out[name] = self._scores[key]
            else:
                waiting[name] = self._score(key, qasm, device)
        if waiting:
            loop = asyncio.get_running_loop()
            timeout = None if deadline is None else max(deadline - loop.time(), 0.0)
            await asyncio.wait(waiting.values(), timeout=timeout)
            for name, future in waiting.items():
                if future.done():
                    out[name] = future.result()
                else:
                    out[name] = "not scored within the deadline (scoring goes on; ask again)"
        return out

    def _score(
        self, key: ScoreKey, qasm: str, device: DeviceCalibration
    ) -> asyncio.Future[LayoutScore | str]:
        """A scoring in the worker pool, shared by every request that needs it."""
        running = self._scoring.get(key)
        if running is not None:
            return running
        loop = asyncio.get_running_loop()
        inner = loop.run_in_executor(self.executor, esp_module.score, qasm, device)
        future: asyncio.Future[LayoutScore | str] = loop.create_future()

        def done(task: asyncio.Future[LayoutScore]) -> None:
            self._scoring.pop(key, None)
            try:
                result: LayoutScore | str = task.result()
            except NotSchedulable as exc:
                result = str(exc)
            except Exception as exc:  # a worker crash: report it, do not cache it
                log.warning("scoring on %s failed: %s", key[0], exc)
                future.set_result(f"scoring failed: {type(exc).__name__}")
                return
            self._scores[key] = result
            if len(self._scores) > ESP_CACHE_SIZE:
                self._scores.popitem(last=False)
            future.set_result(result)

        inner.add_done_callback(done)
        self._scoring[key] = future
        return future

    async def _device(self, name: str, at: datetime, config_hash: str) -> DeviceCalibration:
        key = (name, at, config_hash)
        device = self._devices.get(key)
        if device is None:
            device = await device_calibration(self.pool, name, at, config_hash)
            self._devices[key] = device
            if len(self._devices) > DEVICE_CACHE_SIZE:
                self._devices.popitem(last=False)
        return device


def _failed(request: RecommendRequest, error: str) -> RecommendReply:
    return RecommendReply(
        request_id=request.request_id, strategy=request.strategy, recommendations=[], error=error
    )
