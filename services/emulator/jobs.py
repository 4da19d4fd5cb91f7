"""Emulated Runtime jobs: where each one is in its backend's queue, and what IBM would say.

A job's state is derived when asked: queued until its queue slot starts, running until
the slot ends (or until Aer has the result, if later), then completed or failed.
"""

from __future__ import annotations

import bisect
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from services.emulator.devices import Clock
from services.emulator.queues import BackendQueue, QueueItem

API_STATUS = {
    "QUEUED": "Queued",
    "RUNNING": "Running",
    "DONE": "Completed",
    "ERROR": "Failed",
    "CANCELLED": "Cancelled",
}
REASON_CODE_FAILED = 1517  # IBM's "Error in job" family


def new_job_id() -> str:
    """A 20-character id like IBM's."""
    return "d" + uuid.uuid4().hex[:19]


def iso(clock: Clock, emulated_s: float | None) -> str | None:
    """An emulated moment as IBM writes times: wall-clock ISO 8601 in UTC."""
    if emulated_s is None:
        return None
    shown = datetime.fromtimestamp(clock.shown_s(emulated_s), UTC)
    return shown.isoformat().replace("+00:00", "Z")


@dataclass
class Job:
    """One emulated Runtime job."""

    id: str
    account_id: str
    instance: str
    backend: str
    program_id: str
    params_json: str
    tags: list[str]
    created_s: float
    queue: BackendQueue
    item: QueueItem
    num_pubs: int
    private: bool = False
    cancelled_s: float | None = None
    error: str | None = None
    injected_error: str | None = None
    result_json: str | None = None
    ready_s: float | None = None

    def state(self, now_s: float) -> tuple[str, str | None]:
        """IBM's status (QUEUED, RUNNING, DONE, ERROR, CANCELLED) and reason at `now_s`."""
        if self.cancelled_s is not None:
            return "CANCELLED", "cancelled by user"
        self.queue.advance(now_s)
        start, end = self.item.start_s, self.item.end_s
        if start is None or end is None or now_s < start:
            return "QUEUED", None
        if now_s < end:
            return "RUNNING", None
        if self.injected_error:
            return "ERROR", self.injected_error
        if self.error is not None:
            return "ERROR", self.error
        if self.result_json is None:
            return "RUNNING", None  # the slot is over but Aer is still computing
        return "DONE", None

    def finished_s(self, now_s: float) -> float | None:
        status, _ = self.state(now_s)
        if status == "CANCELLED":
            return self.cancelled_s
        if status in ("DONE", "ERROR") and self.item.end_s is not None:
            return max(self.item.end_s, self.ready_s or self.item.end_s)
        return None

    def quantum_seconds(self, now_s: float) -> float:
        start = self.item.start_s
        if start is None or now_s < start:
            return 0.0
        finished = self.finished_s(now_s) or now_s
        return round(max(0.0, min(finished, self.item.end_s or finished) - start), 3)

    def position(self) -> int:
        """Jobs ahead of this one (0 when running or done)."""
        waiting = list(self.queue.waiting)
        return waiting.index(self.item) + 1 if self.item in waiting else 0

    def summary(self, now_s: float, clock: Clock) -> dict[str, Any]:
        """The job as `GET /jobs/{id}` and `GET /jobs` return it."""
        status, reason = self.state(now_s)
        state: dict[str, Any] = {"status": API_STATUS[status]}
        if reason and status == "ERROR":
            state.update(reason=reason, reason_code=REASON_CODE_FAILED)
        elif status == "CANCELLED":
            state.update(reason=reason)
        seconds = self.quantum_seconds(now_s)
        return {
            "id": self.id,
            "backend": self.backend,
            "state": state,
            "status": API_STATUS[status],
            "program": {"id": self.program_id},
            "created": iso(clock, self.created_s),
            "tags": list(self.tags),
            "session_id": None,
            "private": self.private,
            "runtime": "",
            "user_id": self.account_id,
            "usage": {"quantum_seconds": seconds, "seconds": seconds},
            "estimated_running_time_seconds": round(self.item.service_s, 3),
        }

    def metrics(self, now_s: float, clock: Clock) -> dict[str, Any]:
        """`GET /jobs/{id}/metrics`: timestamps, usage, queue position."""
        status, _ = self.state(now_s)
        started = self.item.start_s if status != "QUEUED" and self.item.start_s else None
        if self.cancelled_s is not None and (started is None or started > self.cancelled_s):
            started = None
        seconds = self.quantum_seconds(now_s)
        estimated_start = self.item.start_s if self.item.start_s is not None else None
        return {
            "timestamps": {
                "created": iso(clock, self.created_s),
                "running": iso(clock, started),
                "finished": iso(clock, self.finished_s(now_s)),
            },
            "bss": {"seconds": seconds},
            "usage": {"quantum_seconds": seconds, "seconds": seconds},
            "executions": self.num_pubs,
            "num_circuits": self.num_pubs,
            "qiskit_version": "emulator",
            "position_in_queue": self.position(),
            "position_in_provider": self.position(),
            "estimated_start_time": iso(clock, estimated_start) if status == "QUEUED" else None,
            "estimated_completion_time": (
                iso(clock, self.item.end_s)
                if status in ("QUEUED", "RUNNING") and self.item.end_s
                else None
            ),
        }


@dataclass
class JobIndex:
    """Jobs sorted by (created, id), for paging without scanning everything."""

    keys: list[tuple[float, str]] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)

    def add(self, job: Job) -> None:
        key = (job.created_s, job.id)
        at = bisect.bisect(self.keys, key)
        self.keys.insert(at, key)
        self.jobs.insert(at, job)

    def remove(self, job: Job) -> None:
        at = bisect.bisect_left(self.keys, (job.created_s, job.id))
        if at < len(self.keys) and self.keys[at] == (job.created_s, job.id):
            del self.keys[at]
            del self.jobs[at]

    def between(self, after_s: float | None, before_s: float | None) -> list[Job]:
        """Jobs created in [after_s, before_s], oldest first."""
        lo = 0 if after_s is None else bisect.bisect_left(self.keys, (after_s, ""))
        hi = (
            len(self.keys)
            if before_s is None
            else bisect.bisect_right(self.keys, (before_s, "\uffff"))
        )
        return self.jobs[lo:hi]


@dataclass
class JobStore:
    """Every job by id, plus indexes per instance, per instance and backend, per tag."""

    by_id: dict[str, Job] = field(default_factory=dict)
    indexes: dict[tuple[str, str], JobIndex] = field(default_factory=dict)

    def _index(self, instance: str, key: str) -> JobIndex:
        return self.indexes.setdefault((instance, key), JobIndex())

    def add(self, job: Job) -> None:
        self.by_id[job.id] = job
        for key in ("*", f"backend:{job.backend}", *(f"tag:{t}" for t in set(job.tags))):
            self._index(job.instance, key).add(job)

    def retag(self, job: Job, tags: list[str]) -> None:
        for tag in set(job.tags) - set(tags):
            self._index(job.instance, f"tag:{tag}").remove(job)
        for tag in set(tags) - set(job.tags):
            self._index(job.instance, f"tag:{tag}").add(job)
        job.tags = tags

    def get(self, job_id: str) -> Job | None:
        return self.by_id.get(job_id)

    def values(self) -> list[Job]:
        return list(self.by_id.values())

    def __len__(self) -> int:
        return len(self.by_id)

    def candidates(self, instance: str, backend: str | None, tags: list[str]) -> JobIndex:
        """The smallest index that holds every job matching these filters."""
        keys = ["*"] + ([f"backend:{backend}"] if backend else []) + [f"tag:{t}" for t in tags]
        return min((self._index(instance, k) for k in keys), key=lambda index: len(index.keys))
