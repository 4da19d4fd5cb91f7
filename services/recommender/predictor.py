"""Queue-wait prediction: the seed's formula, and a model learned from recorded history.

`seed` (the original system's): wait = pending jobs × mean historical run time of this
backend's jobs. It only knows this system's own jobs, so it misjudges queues whose other
users' jobs run longer or shorter than ours.

`learned`: gradient-boosted quantile regression (scikit-learn) of log(1 + wait) at the
10th, 50th and 90th percentiles, from what was known when each recorded job entered the
queue: pending jobs then and whether the backend was paused, backend, hour of week, job
size (shots over all circuits), and
the backend's recent throughput (jobs of ours that started in the last six hours and their
seconds of wait per queued job). The 80% interval is conformalised on the newest fifth of
the history (split conformal quantile regression), so its coverage holds on new data even
where the quantile models are off. Pure functions and classes, no I/O.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

RECENT_WINDOW = timedelta(hours=6)
INTERVAL = 0.8  # the interval's nominal coverage
CALIBRATION_SHARE = 0.2
FEATURES = ("backend", "log_pending", "hour_of_week", "hour_of_day", "log_size",
            "log_recent_s_per_job", "recent_started", "paused")  # fmt: skip


@dataclass(frozen=True)
class HistoryJob:
    """One finished queue wait of ours, with what was known when the job was queued."""

    backend: str
    queued_at: datetime
    started_at: datetime
    finished_at: datetime | None
    pending_at_queue: int | None
    size: float  # shots over all circuits
    operational_at_queue: bool | None = None

    @property
    def wait_s(self) -> float:
        return max((self.started_at - self.queued_at).total_seconds(), 0.0)

    @property
    def run_s(self) -> float | None:
        if self.finished_at is None:
            return None
        return max((self.finished_at - self.started_at).total_seconds(), 0.0)


@dataclass(frozen=True)
class WaitQuery:
    """A wait to predict: a job of `size` shots entering `backend`'s queue `at`."""

    backend: str
    at: datetime
    pending: int | None
    size: float
    operational: bool | None = None


@dataclass(frozen=True)
class Prediction:
    """Predicted queue wait in seconds: median and an 80% interval (None: unknown)."""

    median_s: float | None
    low_s: float | None
    high_s: float | None
    model: str
    note: str | None = None


class TooLittleHistory(ValueError):
    """Not enough recorded jobs to learn from (the message says how many there are)."""


class Recent:
    """Per backend, our jobs by start time: how fast its queue has been moving lately."""

    def __init__(self, jobs: Sequence[HistoryJob]) -> None:
        by_backend: dict[str, list[tuple[float, float]]] = {}
        for job in jobs:
            per_job = job.wait_s / ((job.pending_at_queue or 0) + 1)
            by_backend.setdefault(job.backend, []).append((job.started_at.timestamp(), per_job))
        self._starts: dict[str, list[float]] = {}
        self._per_job: dict[str, list[float]] = {}
        for backend, rows in by_backend.items():
            rows.sort()
            self._starts[backend] = [r[0] for r in rows]
            self._per_job[backend] = [r[1] for r in rows]

    def at(self, backend: str, moment: datetime) -> tuple[float, int]:
        """(median seconds of wait per queued job, jobs started) in the window before `moment`."""
        starts = self._starts.get(backend)
        if not starts:
            return math.nan, 0
        end_s = moment.timestamp()
        lo = bisect.bisect_left(starts, end_s - RECENT_WINDOW.total_seconds())
        hi = bisect.bisect_left(starts, end_s)  # strictly before: nothing from the future
        if hi <= lo:
            return math.nan, 0
        return float(np.median(self._per_job[backend][lo:hi])), hi - lo


def features(queries: Sequence[WaitQuery], recent: Recent, codes: dict[str, int]) -> np.ndarray:
    """The model's input rows (columns as in FEATURES; NaN where unknown)."""
    rows = np.empty((len(queries), len(FEATURES)))
    for i, q in enumerate(queries):
        per_job, started = recent.at(q.backend, q.at)
        weekday = q.at.weekday()
        hour = q.at.hour + q.at.minute / 60
        rows[i] = (
            codes.get(q.backend, math.nan),
            math.log1p(q.pending) if q.pending is not None else math.nan,
            weekday * 24 + hour,
            hour,
            math.log1p(max(q.size, 0.0)),
            math.log1p(per_job) if not math.isnan(per_job) else math.nan,
            started,
            math.nan if q.operational is None else float(not q.operational),
        )
    return rows


class SeedPredictor:
    """The seed's formula: pending jobs × mean historical run time of the backend's jobs."""

    name = "seed"

    def __init__(self, jobs: Sequence[HistoryJob]) -> None:
        runs: dict[str, list[float]] = {}
        for job in jobs:
            if job.run_s is not None:
                runs.setdefault(job.backend, []).append(job.run_s)
        every = [r for rs in runs.values() for r in rs]
        self.mean_run_s = {b: float(np.mean(rs)) for b, rs in runs.items()}
        self.overall_run_s = float(np.mean(every)) if every else None

    def predict(self, query: WaitQuery) -> Prediction:
        if query.pending == 0:
            return Prediction(0.0, None, None, self.name)  # nothing ahead: no run time needed
        run_s = self.mean_run_s.get(query.backend, self.overall_run_s)
        if query.pending is None:
            return Prediction(None, None, None, self.name, "no pending-job count recorded")
        if run_s is None:
            return Prediction(None, None, None, self.name, "no finished job's run time recorded")
        return Prediction(query.pending * run_s, None, None, self.name)


@dataclass
class LearnedPredictor:
    """Quantile gradient boosting on log(1 + wait), with a conformalised 80% interval."""

    min_jobs: int = 200
    min_backend_jobs: int = 20
    name: str = "learned"
    trained_on: int = 0
    codes: dict[str, int] = field(default_factory=dict)
    backend_jobs: dict[str, int] = field(default_factory=dict)
    widen: float = 0.0  # conformal correction, in log(1 + s)
    _models: dict[float, object] = field(default_factory=dict, repr=False)

    def fit(self, jobs: Sequence[HistoryJob]) -> LearnedPredictor:
        """Learn from `jobs` (any order); raises TooLittleHistory below `min_jobs`."""
        from sklearn.ensemble import HistGradientBoostingRegressor  # noqa: PLC0415 (slow import)

        if len(jobs) < self.min_jobs:
            raise TooLittleHistory(
                f"too little history: {len(jobs)} finished queue waits recorded, "
                f"{self.min_jobs} needed"
            )
        ordered = sorted(jobs, key=lambda j: j.queued_at)
        self.codes = {b: i for i, b in enumerate(sorted({j.backend for j in ordered}))}
        self.backend_jobs = {}
        for job in ordered:
            self.backend_jobs[job.backend] = self.backend_jobs.get(job.backend, 0) + 1
        recent = Recent(ordered)
        x = features([query_of(j) for j in ordered], recent, self.codes)
        y = np.log1p([j.wait_s for j in ordered])
        cut = int(len(ordered) * (1 - CALIBRATION_SHARE))
        tail = (1 - INTERVAL) / 2
        self._models = {}
        for quantile in (tail, 0.5, 1 - tail):
            model = HistGradientBoostingRegressor(
                loss="quantile",
                quantile=quantile,
                max_iter=300,
                learning_rate=0.08,
                max_leaf_nodes=31,
                min_samples_leaf=20,
                categorical_features=[0],
                random_state=0,
            )
            model.fit(x[:cut], y[:cut])
            self._models[quantile] = model
        low = self._models[tail].predict(x[cut:])  # type: ignore[attr-defined]
        high = self._models[1 - tail].predict(x[cut:])  # type: ignore[attr-defined]
        scores = np.maximum(low - y[cut:], y[cut:] - high)
        n = len(scores)
        level = min(math.ceil((n + 1) * INTERVAL) / n, 1.0)
        self.widen = float(np.quantile(scores, level))
        self.trained_on = len(ordered)
        return self

    @property
    def ready(self) -> bool:
        return bool(self._models)

    def knows(self, backend: str) -> bool:
        return self.backend_jobs.get(backend, 0) >= self.min_backend_jobs

    def predict(self, queries: Sequence[WaitQuery], recent: Recent) -> list[Prediction]:
        """Median and 80% interval for each query, in seconds."""
        if not queries:
            return []
        x = features(queries, recent, self.codes)
        tail = (1 - INTERVAL) / 2
        med = self._models[0.5].predict(x)  # type: ignore[attr-defined]
        low = self._models[tail].predict(x) - self.widen  # type: ignore[attr-defined]
        high = self._models[1 - tail].predict(x) + self.widen  # type: ignore[attr-defined]
        out = []
        for m, lo, hi in zip(med, low, high, strict=True):
            median_s = max(float(np.expm1(m)), 0.0)
            out.append(
                Prediction(
                    median_s=median_s,
                    low_s=min(max(float(np.expm1(lo)), 0.0), median_s),
                    high_s=max(float(np.expm1(hi)), median_s),
                    model=self.name,
                )
            )
        return out


def query_of(job: HistoryJob) -> WaitQuery:
    """What was known when `job` entered the queue."""
    return WaitQuery(
        job.backend, job.queued_at, job.pending_at_queue, job.size, job.operational_at_queue
    )


@dataclass
class Predictors:
    """Both predictors over the same history; `learned` falls back to `seed` with a note."""

    seed: SeedPredictor
    learned: LearnedPredictor | None
    recent: Recent
    why_not_learned: str | None = None

    @classmethod
    def train(cls, jobs: Sequence[HistoryJob], min_jobs: int = 200) -> Predictors:
        seed = SeedPredictor(jobs)
        try:
            learned: LearnedPredictor | None = LearnedPredictor(min_jobs=min_jobs).fit(jobs)
            why = None
        except TooLittleHistory as exc:
            learned, why = None, str(exc)
        return cls(seed, learned, Recent(jobs), why)

    def predict(
        self, queries: Sequence[WaitQuery], strategy: str, recent: Recent | None = None
    ) -> list[Prediction]:
        """Predictions by `strategy` ("seed" or "learned"); learned falls back per backend."""
        recent = recent or self.recent
        seeded = [self.seed.predict(q) for q in queries]
        if strategy == "seed":
            return seeded
        learned = self.learned
        if learned is None:
            return [_fallback(p, self.why_not_learned or "no model yet") for p in seeded]
        known = [i for i, q in enumerate(queries) if learned.knows(q.backend)]
        answers = [
            _fallback(
                p,
                f"too little history for {q.backend} "
                f"({learned.backend_jobs.get(q.backend, 0)} jobs; "
                f"{learned.min_backend_jobs} needed)",
            )
            for p, q in zip(seeded, queries, strict=True)
        ]
        for i, prediction in zip(
            known, learned.predict([queries[i] for i in known], recent), strict=True
        ):
            answers[i] = prediction
        return answers


def _fallback(prediction: Prediction, why: str) -> Prediction:
    if prediction.median_s is None:
        note = f"{why}; the seed formula cannot answer either: {prediction.note}"
    else:
        note = f"{why}; the seed formula answers instead"
    return Prediction(prediction.median_s, None, None, "seed", note)
