"""What the poller publishes: only changes. Plain functions and state, no I/O.

- A backend's status is published when operational, pending jobs or message change.
- A calibration is published when its `last_update_date` is new; a configuration when
  it is first seen or its content changes.
- A job's status is published when it differs from the last one seen; a job that left
  the pending list is looked up once for its final state (and result).
Jobs submitted through this system carry the tag `qjt-job:<id>` and keep that id; any
other job of the instance is tracked under its IBM id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from qjt.contracts import (
    FINAL_STATUSES,
    JOB_TAG_PREFIX,
    BackendCalibration,
    BackendConfiguration,
    BackendStatus,
    JobStatusChanged,
    Primitive,
    stable_hash,
)


def job_id_for(ibm_job_id: str, tags: list[str]) -> str:
    """This system's job id for an IBM job (its own id if submitted elsewhere)."""
    for tag in tags:
        if tag.startswith(JOB_TAG_PREFIX):
            return tag.removeprefix(JOB_TAG_PREFIX)
    return ibm_job_id


def primitive_for(program: str | None) -> Primitive | None:
    return program if program in ("sampler", "estimator") else None  # type: ignore[return-value]


@dataclass
class BackendMemory:
    """The last published state of each backend (shared by a replica's accounts)."""

    status: dict[str, tuple[bool, int, str]] = field(default_factory=dict)
    calibrated_at: dict[str, datetime] = field(default_factory=dict)
    config: dict[str, str] = field(default_factory=dict)

    def status_changed(self, status: BackendStatus) -> bool:
        key = (status.operational, status.pending_jobs, status.status_msg)
        if self.status.get(status.backend) == key:
            return False
        self.status[status.backend] = key
        return True

    def calibration_changed(self, calibration: BackendCalibration) -> bool:
        if self.calibrated_at.get(calibration.backend) == calibration.calibrated_at:
            return False
        self.calibrated_at[calibration.backend] = calibration.calibrated_at
        return True

    def config_changed(self, config: BackendConfiguration) -> bool:
        fingerprint = stable_hash(config.model_dump(exclude={"id", "occurred_at"}))
        if self.config.get(config.backend) == fingerprint:
            return False
        self.config[config.backend] = fingerprint
        return True


@dataclass(frozen=True)
class SeenJob:
    """A job as last seen in IBM's list."""

    ibm_job_id: str
    backend: str
    status: str
    created_at: datetime
    tags: tuple[str, ...]
    program: str | None


@dataclass
class JobTracker:
    """Statuses last published per IBM job of one instance."""

    user_id: str
    instance: str
    known: dict[str, SeenJob] = field(default_factory=dict)
    finished: dict[str, float] = field(default_factory=dict)  # IBM id → when (monotonic s)

    def expect(self, job: SeenJob) -> None:
        """A job this system just submitted: track it even if it ends before the next poll."""
        if job.ibm_job_id not in self.known and job.ibm_job_id not in self.finished:
            self.known[job.ibm_job_id] = job

    def unfinished(self, jobs: list[SeenJob]) -> list[SeenJob]:
        """Final jobs whose end this tracker has not published yet."""
        return [j for j in jobs if j.ibm_job_id not in self.finished]

    def observe(
        self, jobs: list[SeenJob], status_at: dict[str, datetime]
    ) -> list[JobStatusChanged]:
        """Status events for jobs whose status differs from what was last published."""
        events = []
        for job in jobs:
            previous = self.known.get(job.ibm_job_id)
            if previous is not None and previous.status == job.status:
                continue
            self.known[job.ibm_job_id] = job
            events.append(self.status_event(job, status_at.get(job.ibm_job_id, job.created_at)))
        return events

    def left_pending(self, pending_ids: set[str]) -> list[SeenJob]:
        """Jobs last seen pending that are no longer in the pending list."""
        return [
            job
            for job_id, job in self.known.items()
            if job.status not in FINAL_STATUSES and job_id not in pending_ids
        ]

    def forget_final(self, now_s: float, keep_s: float = 3600.0) -> None:
        """Stop tracking final jobs; remember their ids for `keep_s` so sweeps skip them."""
        for job_id, job in self.known.items():
            if job.status in FINAL_STATUSES:
                self.finished[job_id] = now_s
        self.known = {k: v for k, v in self.known.items() if v.status not in FINAL_STATUSES}
        self.finished = {k: t for k, t in self.finished.items() if now_s - t < keep_s}

    def status_event(self, job: SeenJob, status_at: datetime) -> JobStatusChanged:
        return JobStatusChanged(
            job_id=job_id_for(job.ibm_job_id, list(job.tags)),
            user_id=self.user_id,
            ibm_job_id=job.ibm_job_id,
            backend=job.backend,
            status=job.status,
            status_at=status_at,
            primitive=primitive_for(job.program),
            instance=self.instance,
            tags=list(job.tags),
            created_at=job.created_at,
        )
