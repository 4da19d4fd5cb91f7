"""What the submitter does with each command. Plain functions over ports, no I/O imports.

- submit: a local Aer job runs in the process pool and reports its whole lifecycle. An
  IBM job is first looked up by its `qjt-job:<id>` tag, so a redelivered command (say the
  submitter died after IBM accepted the job but before the ack) never creates a second
  job; otherwise it is transpiled and run. IBM's refusal becomes a failed event with
  IBM's reason; an IBM outage is retried a few times, then reported as a failure too.
- cancel: the IBM job is cancelled; if IBM has none yet, the cancellation is recorded and
  a later submit of that job is skipped (and undone if it raced past the check).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from qjt.contracts import (
    CancelJob,
    JobCancelled,
    JobFailed,
    JobMetrics,
    JobResult,
    JobStatusChanged,
    JobSubmitted,
    Message,
    ObservableTerm,
    SubmitJob,
)
from services.submitter.ibm import (
    Credential,
    IbmJobRef,
    IbmRefused,
    IbmUnavailable,
    NotRunnable,
)
from services.submitter.ledger import KnownJob

log = logging.getLogger("qjt.submitter")
T = TypeVar("T")

IBM_ATTEMPTS = 5
FIRST_RETRY_S = 1.0


class IbmPort(Protocol):
    async def find(self, cred: Credential, job_id: str) -> IbmJobRef | None: ...
    async def submit(self, cred: Credential, command: SubmitJob) -> IbmJobRef: ...
    async def cancel(self, cred: Credential, ibm_job_id: str) -> None: ...


class AerPort(Protocol):
    async def run(
        self,
        circuits: list[str],
        shots: int | None,
        observables: list[list[ObservableTerm]] | None,
    ) -> dict[str, Any]: ...


class LedgerPort(Protocol):
    async def credential(self, user_id: str, instance: str) -> Credential | None: ...
    async def job(self, job_id: str) -> KnownJob | None: ...


@dataclass
class Ports:
    ibm: IbmPort
    aer: AerPort
    ledger: LedgerPort
    retry_s: float = FIRST_RETRY_S


def _now() -> datetime:
    return datetime.now(UTC)


async def _with_retries(ports: Ports, call: Callable[[], Awaitable[T]]) -> T:
    """Retry IBM outages with backoff; the last IbmUnavailable propagates."""
    delay = ports.retry_s
    for attempt in range(1, IBM_ATTEMPTS):
        try:
            return await call()
        except IbmUnavailable as exc:
            log.warning("IBM unavailable (%s); attempt %d of %d", exc, attempt, IBM_ATTEMPTS)
            await asyncio.sleep(delay)
            delay *= 2
    return await call()


def _failed(command: SubmitJob | CancelJob, reason: str) -> JobFailed:
    return JobFailed(job_id=command.job_id, user_id=command.user_id, reason=reason)


async def submit_job(command: SubmitJob, ports: Ports) -> list[Message]:
    """Run the job on IBM (or locally); the events to publish."""
    known = await ports.ledger.job(command.job_id)
    if known is not None and known.status == "CANCELLED":
        log.info("job %s was cancelled before submission", command.job_id)
        return []
    if command.primitive == "aer":
        return await run_locally(command, ports)
    if command.instance is None:
        return [_failed(command, "no IBM instance was chosen for this job")]
    cred = await ports.ledger.credential(command.user_id, command.instance)
    if cred is None:
        return [
            _failed(command, f"no registered IBM token of this user can use {command.instance}")
        ]

    async def find_or_submit() -> IbmJobRef:
        # Looked up again before every attempt: a submit whose answer was lost may have
        # created the job anyway.
        found = await ports.ibm.find(cred, command.job_id)
        return found if found is not None else await ports.ibm.submit(cred, command)

    try:
        ref = await _with_retries(ports, find_or_submit)
    except NotRunnable as exc:
        return [_failed(command, f"the circuits cannot run on {command.backend}: {exc}")]
    except IbmRefused as exc:
        return [_failed(command, f"IBM refused the job: {exc}")]
    except IbmUnavailable as exc:
        return [_failed(command, f"IBM unavailable after {IBM_ATTEMPTS} attempts: {exc}")]
    log.info(
        "job %s is IBM job %s on %s",
        command.job_id,
        ref.ibm_job_id,
        ref.backend or command.backend,
        extra={"job_id": command.job_id},
    )
    events: list[Message] = [
        JobSubmitted(
            job_id=command.job_id,
            user_id=command.user_id,
            ibm_job_id=ref.ibm_job_id,
            backend=ref.backend or command.backend,
            instance=command.instance,
            estimated_usage_seconds=ref.estimated_usage_seconds,
        )
    ]
    known = await ports.ledger.job(command.job_id)
    if known is not None and known.status == "CANCELLED":  # cancelled while we submitted
        await _cancel_quietly(ports, cred, ref.ibm_job_id)
    return events


async def run_locally(command: SubmitJob, ports: Ports) -> list[Message]:
    """Simulate on Aer; the whole lifecycle as events."""
    local_id = f"aer-{command.job_id}"
    started = _now()
    try:
        outcome = await ports.aer.run(command.circuits, command.shots, command.observables)
    except Exception as exc:  # a worker's failure is the job's failure, reported to the user
        return [_failed(command, f"local simulation failed: {type(exc).__name__}: {exc}")]
    finished = _now()
    common = {"job_id": command.job_id, "user_id": command.user_id, "backend": command.backend}
    return [
        JobSubmitted(ibm_job_id=local_id, **common, occurred_at=started),
        JobStatusChanged(ibm_job_id=local_id, status="RUNNING", status_at=started, **common),
        JobStatusChanged(ibm_job_id=local_id, status="DONE", status_at=finished, **common),
        JobResult(
            ibm_job_id=local_id,
            primitive="aer",
            metrics=JobMetrics(created_at=started, running_at=started, finished_at=finished),
            **common,
            **outcome,
        ),
    ]


async def cancel_job(command: CancelJob, ports: Ports) -> list[Message]:
    """Cancel on IBM if IBM has the job; the events to publish."""
    cancelled = JobCancelled(job_id=command.job_id, user_id=command.user_id, reason=command.reason)
    known = await ports.ledger.job(command.job_id)
    instance = command.instance or (known.instance if known else None)
    primitive = command.primitive or (known.primitive if known else None)
    if primitive == "aer" or instance is None:
        return [cancelled]
    cred = await ports.ledger.credential(command.user_id, instance)
    if cred is None:
        return [cancelled]
    try:
        ibm_job_id = known.ibm_job_id if known and known.ibm_job_id else None
        if ibm_job_id is None:
            ref = await _with_retries(ports, lambda: ports.ibm.find(cred, command.job_id))
            ibm_job_id = ref.ibm_job_id if ref else None
        if ibm_job_id is None:
            return [cancelled]  # not on IBM yet: the submit will see this and skip
        await _with_retries(ports, lambda: ports.ibm.cancel(cred, ibm_job_id))
    except IbmRefused as exc:
        # Usually: the job finished meanwhile. The poller reports its real final state.
        log.info("IBM did not cancel job %s: %s", command.job_id, exc)
        return []
    return [cancelled.model_copy(update={"ibm_job_id": ibm_job_id})]


async def _cancel_quietly(ports: Ports, cred: Credential, ibm_job_id: str) -> None:
    try:
        await _with_retries(ports, lambda: ports.ibm.cancel(cred, ibm_job_id))
    except (IbmRefused, IbmUnavailable) as exc:
        log.warning("could not cancel IBM job %s after a cancel request: %s", ibm_job_id, exc)
