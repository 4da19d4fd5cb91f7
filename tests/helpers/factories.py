"""Sample messages for tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from qjt.contracts import JobStatusChanged

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def status_event(n: int, status: str = "QUEUED") -> JobStatusChanged:
    """The n-th job's status event: distinct job ids, deterministic message ids."""
    return JobStatusChanged(
        job_id=f"job-{n:05d}",
        user_id="user-a",
        ibm_job_id=f"ibm-{n:05d}",
        backend="fake_sherbrooke",
        status=status,
        status_at=T0 + timedelta(seconds=n),
        occurred_at=T0 + timedelta(seconds=n),
    )
