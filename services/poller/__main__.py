"""Wiring for the poller: `python -m services.poller`.

One task per registered credential × instance. Each polls, on its own schedule, the
statuses of the backends it is the first of this replica's accounts to see, their
calibrations and configurations, its instance's open jobs, and its instance's usage,
publishing only changes. Every client call runs on a dedicated thread pool; a failing
account backs off on its own (exponentially, up to a minute) and never stalls the others.
New registrations are picked up every `poll_accounts_s` (10 s by default). Jobs this
system submits are tracked from the `job.submitted` event on, and a sweep of recently
finished jobs catches any job that began and ended between two polls. Replicas share
the accounts through NATS KV leases (`leases.py`), so each account is polled by exactly one replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from nats.aio.msg import Msg
from prometheus_client import Counter, Gauge, Histogram

from qjt.contracts import (
    FINAL_STATUSES,
    JOB_TAG_PREFIX,
    ContractError,
    InstanceBackends,
    InstanceUsage,
    JobCancelled,
    JobFailed,
    JobResult,
    JobSubmitted,
    Message,
    parse_message,
)
from qjt.service import ServiceContext, run_service
from qjt.vault import Vault
from services.poller.credentials import PollTarget, load_targets
from services.poller.handlers import (
    BackendMemory,
    JobTracker,
    SeenJob,
    job_id_for,
    primitive_for,
)
from services.poller.ibm import IbmAccount, IbmJob
from services.poller.leases import RENEW_S, Leases

log = logging.getLogger("qjt.poller")
T = TypeVar("T")

IBM_REQUESTS = Counter("qjt_poller_ibm_calls_total", "Client calls made to IBM", ["call"])
IBM_ERRORS = Counter("qjt_poller_ibm_errors_total", "Client calls that failed", ["call"])
IBM_SECONDS = Histogram("qjt_poller_ibm_call_seconds", "Client call latency", ["call"])
LAST_POLL = Gauge(
    "qjt_poller_last_success_timestamp_seconds", "When a kind of poll last succeeded", ["kind"]
)
TRACKED_JOBS = Gauge("qjt_poller_tracked_jobs", "Open jobs being tracked")
TARGETS = Gauge("qjt_poller_targets", "Credential × instance pairs polled by this replica")
BACKENDS = Gauge("qjt_poller_backends", "Backends whose status this replica polls")
MAX_BACKOFF_S = 60.0
MAX_RETRY_AFTER_S = 600.0  # a longer Retry-After is capped: look again in ten minutes
SWEEP_MARGIN_S = 300.0
SWEEP_PAGE = 100


class PollError(RuntimeError):
    """Some polls of one account failed (each is named)."""


class Poller:
    """Shared state of one poller replica."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.threads = ThreadPoolExecutor(max_workers=16, thread_name_prefix="ibm")
        self.backends = BackendMemory()
        self.backend_owner: dict[str, str] = {}  # backend → target key that polls it
        self.seen_by: dict[str, set[str]] = {}  # target key → backends its instance sees
        self.leased_backends: set[str] = set()  # the ones this replica polls
        self.trackers: dict[str, JobTracker] = {}
        self.listed: dict[str, list[str]] = {}  # target key → backends its instance lists

    async def call(self, name: str, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking client call on the IBM thread pool, with metrics."""
        IBM_REQUESTS.labels(name).inc()
        started = time.perf_counter()
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self.threads, functools.partial(fn, *args)
            )
        except Exception:
            IBM_ERRORS.labels(name).inc()
            raise
        finally:
            IBM_SECONDS.labels(name).observe(time.perf_counter() - started)

    async def publish(self, messages: list[Message]) -> None:
        if messages:
            await self.ctx.bus.publish_many(messages)

    async def run_target(self, target: PollTarget) -> None:
        """Poll one credential × instance until shutdown; errors back off, never escape."""
        backoff = 1.0
        account: IbmAccount | None = None
        due: dict[str, float] = {}
        while not self.ctx.stopping.is_set():
            try:
                if account is None:
                    account = await self.call(
                        "connect",
                        IbmAccount,
                        target.token,
                        target.instance,
                        target.channel,
                        self.settings,
                    )
                    await self.sweep_recent(target, account)
                await self.poll_due(target, account, due)
                account.take_retry_after()  # a 503 the client retried past is no longer news
                backoff = 1.0
                await self.sleep(1.0)
            except Exception as exc:  # loop edge: one account's failure stays with it
                asked = account.take_retry_after() if account is not None else None
                wait = max(backoff, min(asked or 0.0, MAX_RETRY_AFTER_S))
                log.warning(
                    "polling %s failed (%s: %s); retrying in %.0f s%s",
                    target.key,
                    type(exc).__name__,
                    str(exc)[:300],
                    wait,
                    " (IBM's Retry-After)" if asked and asked >= backoff else "",
                    extra={"target": target.key},
                )
                await self.sleep(wait)
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ctx.stopping.wait(), timeout=seconds)

    async def poll_due(
        self, target: PollTarget, account: IbmAccount, due: dict[str, float]
    ) -> None:
        now = time.monotonic()
        schedule = (
            ("backends", self.settings.poll_status_s, self.poll_backends),
            ("jobs", self.settings.poll_jobs_s, self.poll_jobs),
            ("calibration", self.settings.poll_calibration_s, self.poll_calibrations),
            ("usage", self.settings.poll_usage_s, self.poll_usage),
            ("finished", self.settings.poll_jobs_s * 2, self.poll_finished),
        )
        failures: list[str] = []
        for name, interval, poll in schedule:
            if now >= due.get(name, 0.0):
                due[name] = now + interval  # a failing kind waits its turn; others go on
                try:
                    await poll(target, account)
                except Exception as exc:  # loop edge: reported below, retried next turn
                    failures.append(f"{name}: {type(exc).__name__}: {str(exc)[:200]}")
                else:
                    LAST_POLL.labels(name).set_to_current_time()
        if failures:
            raise PollError("; ".join(failures))

    def owned_backends(self, target: PollTarget, names: list[str]) -> list[str]:
        """Backends this target polls: leased to this replica, and no other target here polls."""
        self.seen_by[target.key] = set(names)
        return [
            n
            for n in names
            if n in self.leased_backends
            and self.backend_owner.setdefault(n, target.key) == target.key
        ]

    def forget_targets_except(self, held: set[str]) -> None:
        """Drop what targets that moved to another replica had seen or owned here."""
        self.seen_by = {k: v for k, v in self.seen_by.items() if k in held}
        self.backend_owner = {b: k for b, k in self.backend_owner.items() if k in held}

    async def poll_backends(self, target: PollTarget, account: IbmAccount) -> None:
        listed = await self.call("backends", account.backend_names)
        events: list[Message] = []
        if self.listed.get(target.key) != sorted(listed):
            events.append(
                InstanceBackends(
                    instance=target.instance, backends=sorted(listed), observed_at=datetime.now(UTC)
                )
            )
        names = self.owned_backends(target, listed)
        for name in names:
            status = await self.call("status", account.status, name)
            if self.backends.status_changed(status):
                events.append(status)
            if name not in self.backends.config:
                config = await self.call("configuration", account.configuration, name)
                if self.backends.config_changed(config):
                    events.append(config)
        await self.publish(events)
        self.listed[target.key] = sorted(listed)

    async def poll_calibrations(self, target: PollTarget, account: IbmAccount) -> None:
        names = [
            n
            for n, owner in self.backend_owner.items()
            if owner == target.key and n in self.leased_backends
        ]
        for name in names:
            calibration = await self.call("properties", account.calibration, name)
            if calibration is not None and self.backends.calibration_changed(calibration):
                await self.publish([calibration])

    async def poll_usage(self, target: PollTarget, account: IbmAccount) -> None:
        usage = await self.call("usage", account.usage)
        await self.publish(
            [
                InstanceUsage(
                    instance=target.instance,
                    usage_consumed_seconds=float(usage.get("usage_consumed_seconds") or 0.0),
                    usage_limit_seconds=usage.get("usage_limit_seconds"),
                    observed_at=datetime.now(UTC),
                )
            ]
        )

    def tracker(self, target: PollTarget) -> JobTracker:
        return self.trackers.setdefault(target.key, JobTracker(target.user_id, target.instance))

    async def poll_jobs(self, target: PollTarget, account: IbmAccount) -> None:
        tracker = self.tracker(target)
        pending = await self.call("jobs", account.jobs, True)
        await self.observe(tracker, account, pending)
        for job in tracker.left_pending({j.ibm_job_id for j in pending}):
            await self.finish(tracker, account, await self.call("job", account.job, job.ibm_job_id))
        tracker.forget_final(time.monotonic())
        TRACKED_JOBS.set(sum(len(t.known) for t in self.trackers.values()))

    async def observe(self, tracker: JobTracker, account: IbmAccount, jobs: list[IbmJob]) -> None:
        seen = [_seen(job) for job in jobs]
        status_at: dict[str, datetime] = {}
        for job in seen:
            previous = tracker.known.get(job.ibm_job_id)
            if job.status == "RUNNING" and (previous is None or previous.status != "RUNNING"):
                metrics, _raw = await self.call("metrics", account.metrics, job.ibm_job_id)
                if metrics.running_at:
                    status_at[job.ibm_job_id] = metrics.running_at
        await self.publish(list(tracker.observe(seen, status_at)))

    async def finish(self, tracker: JobTracker, account: IbmAccount, job: IbmJob) -> None:
        """Publish a job's final state: status, and its result, failure or cancellation."""
        if job.status not in FINAL_STATUSES:
            await self.observe(tracker, account, [job])
            return
        metrics, _raw = await self.call("metrics", account.metrics, job.ibm_job_id)
        seen = _seen(job)
        status_at = metrics.finished_at or datetime.now(UTC)
        # The whole lifecycle with IBM's times, even if polls missed QUEUED or RUNNING (ids
        # dedupe what was published already).
        queued_at = metrics.created_at or seen.created_at
        events: list[Message] = [tracker.status_event(_with_status(seen, "QUEUED"), queued_at)]
        if metrics.running_at is not None:
            events.append(tracker.status_event(_with_status(seen, "RUNNING"), metrics.running_at))
        events += tracker.observe([seen], {job.ibm_job_id: status_at})
        job_id = job_id_for(job.ibm_job_id, job.tags)
        if job.status == "DONE":
            outcome = await self.call("result", account.result, job.ibm_job_id)
            events.append(
                JobResult(
                    job_id=job_id,
                    user_id=tracker.user_id,
                    ibm_job_id=job.ibm_job_id,
                    backend=job.backend,
                    primitive=primitive_for(job.program) or "sampler",
                    metrics=metrics,
                    **outcome,
                )
            )
        elif job.status == "ERROR":
            events.append(
                JobFailed(
                    job_id=job_id,
                    user_id=tracker.user_id,
                    ibm_job_id=job.ibm_job_id,
                    reason=job.reason or "IBM reported the job failed",
                )
            )
        else:
            events.append(
                JobCancelled(
                    job_id=job_id,
                    user_id=tracker.user_id,
                    ibm_job_id=job.ibm_job_id,
                    reason=job.reason or "",
                )
            )
        await self.publish(events)

    async def sweep_recent(self, target: PollTarget, account: IbmAccount) -> None:
        """At start: final states of jobs that ended while no poller was watching."""
        if self.settings.poll_lookback_h > 0:
            await self.finish_ended_since(
                target, account, timedelta(hours=self.settings.poll_lookback_h), most=None
            )

    async def poll_finished(self, target: PollTarget, account: IbmAccount) -> None:
        """Jobs that began and ended between two polls (never seen pending): their end.

        One page of the newest is enough: jobs that came and went between two polls are
        the newest.
        """
        window = timedelta(seconds=self.settings.poll_jobs_s * 4 + SWEEP_MARGIN_S)
        await self.finish_ended_since(target, account, window, most=SWEEP_PAGE)

    async def finish_ended_since(
        self, target: PollTarget, account: IbmAccount, window: timedelta, most: int | None
    ) -> None:
        """Publish the end of every final job created within `window` not yet published."""
        tracker = self.tracker(target)
        ended = await self.call("jobs", account.jobs, False, datetime.now(UTC) - window, most)
        listed = {j.ibm_job_id: j for j in ended}
        for job in tracker.unfinished([_seen(j) for j in ended]):
            await self.finish(tracker, account, listed[job.ibm_job_id])
        tracker.forget_final(time.monotonic())

    def expect_submitted(self, event: JobSubmitted) -> None:
        """Track a job this system submitted from the moment IBM accepted it."""
        for tracker in self.trackers.values():
            if tracker.instance == event.instance and tracker.user_id == event.user_id:
                tracker.expect(
                    SeenJob(
                        event.ibm_job_id,
                        event.backend,
                        "INITIALIZING",
                        event.occurred_at,
                        (f"{JOB_TAG_PREFIX}{event.job_id}",),
                        None,
                    )
                )


def _with_status(job: SeenJob, status: str) -> SeenJob:
    return SeenJob(job.ibm_job_id, job.backend, status, job.created_at, job.tags, job.program)


def _seen(job: IbmJob) -> SeenJob:
    return SeenJob(
        job.ibm_job_id, job.backend, job.status, job.created_at, tuple(job.tags), job.program
    )


async def start(ctx: ServiceContext) -> None:
    """Poll the targets this replica holds leases on; re-balance as replicas come and go."""
    assert ctx.pool is not None
    pool = ctx.pool
    vault = Vault.from_settings(ctx.settings)
    poller = Poller(ctx)
    replica = f"{socket.gethostname()}-{os.getpid()}"
    leases = await Leases.open(ctx.bus.js, replica, ctx.settings.stream_replicas)
    running: dict[str, asyncio.Task[None]] = {}

    async def keep_targets_current() -> None:
        targets: dict[str, PollTarget] = {}
        reload_at = 0.0
        polled = -1
        while not ctx.stopping.is_set():
            try:
                if time.monotonic() >= reload_at:
                    targets = {t.key: t for t in await load_targets(pool, vault)}
                    reload_at = time.monotonic() + ctx.settings.poll_accounts_s
                held = await leases.claim(sorted(targets))
                poller.forget_targets_except(held)
                seen = set().union(*(poller.seen_by.get(key, set()) for key in held))
                poller.leased_backends = await leases.claim_backends(seen)
                BACKENDS.set(len(poller.leased_backends))
            except Exception as exc:  # loop edge: keep polling what we hold
                log.warning("refreshing accounts or leases failed: %s", exc)
                held = set(running)
            for key in sorted(held):
                if key in targets and (key not in running or running[key].done()):
                    running[key] = asyncio.create_task(poller.run_target(targets[key]), name=key)
            for key in set(running) - held:
                running.pop(key).cancel()
            if len(running) != polled:
                polled = len(running)
                log.info(
                    "polling %d of %d accounts",
                    len(running),
                    len(targets),
                    extra={"replica": replica},
                )
            TARGETS.set(len(running))
            await poller.sleep(RENEW_S)
        await asyncio.gather(*running.values(), return_exceptions=True)
        await leases.release_all()
        poller.threads.shutdown(wait=False, cancel_futures=True)

    async def on_submitted(msg: Msg) -> None:
        try:
            event = parse_message(msg.data)
        except ContractError:
            return  # the recorder dead-letters unreadable events
        if isinstance(event, JobSubmitted) and event.instance:
            poller.expect_submitted(event)

    # A plain subscription: every replica hears every submission and keeps the ones of the
    # accounts it polls; one missed (replica restarting) is found by the finished sweep.
    await ctx.bus.nc.subscribe("qjt.evt.job.submitted", cb=on_submitted)
    ctx.spawn(keep_targets_current(), name="poller")


if __name__ == "__main__":
    run_service("poller", start, needs_db=True)
