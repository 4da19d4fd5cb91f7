"""The notifier's work: events in, ledger rows, sends, retries.

For each event a notification is due for, one ledger row per destination is added
(idempotently), then the rows are claimed and sent at once; a row that needs another try
stays in the ledger with its next attempt time and a retry loop (in every replica) picks
it up. The consumer acks a batch only after its rows are in the ledger and each first
attempt has been recorded, so a notifier killed at any point loses nothing: rows it had
sent are marked sent before the ack, and redelivery finds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Gauge

from qjt.config import Settings
from qjt.contracts import (
    BackendCalibration,
    BackendStatus,
    InstanceUsage,
    JobCancelled,
    JobFailed,
    JobResult,
    Message,
)
from qjt.telemetry import register_secret
from qjt.vault import Vault
from services.notifier import alerts as rules
from services.notifier import messages
from services.notifier.delivery import Outcome, Target, send
from services.notifier.messages import Alert, JobFacts
from services.notifier.store import Channel, Claimed, NotifierStore, Pending

log = logging.getLogger(__name__)
DELIVERIES = Counter(
    "qjt_notifier_deliveries_total", "Send attempts by outcome", ["channel", "outcome"]
)
FAILING = Gauge("qjt_notifier_failing_channels", "Channels reported failing")
CLAIM_BATCH = 50
RETRY_EVERY_S = 1.0


@dataclass
class Notifier:
    settings: Settings
    store: NotifierStore
    vault: Vault | None

    # -- events in ---------------------------------------------------------

    async def handle(self, batch: list[Message]) -> None:
        """Ledger rows for every notification the batch calls for, then first attempts."""
        for message in batch:
            keys = await self.plan(message)
            if keys:
                await self.deliver(keys)

    async def plan(self, message: Message) -> list[str]:
        """Add the ledger rows `message` calls for; their dedupe keys."""
        if isinstance(message, JobResult | JobFailed | JobCancelled):
            return await self._job(message)
        if isinstance(message, BackendStatus):
            found = await self.store.backend_transition(
                message.backend,
                lambda s: rules.status_alerts(s, message, self.settings.alert_queue_threshold),
            )
            return await self._alerts(found, await self.store.channels_for_backend(message.backend))
        if isinstance(message, BackendCalibration):
            baseline = await self.store.calibration_baseline(message.backend, message.calibrated_at)
            found = await self.store.backend_transition(
                message.backend,
                lambda s: rules.calibration_alerts(
                    s, message, baseline, self.settings.alert_degradation_factor
                ),
            )
            return await self._alerts(found, await self.store.channels_for_backend(message.backend))
        if isinstance(message, InstanceUsage):
            alert = await self.store.quota_transition(
                message.instance,
                lambda above: rules.quota_alert(above, message, self.settings.alert_quota_share),
            )
            if alert is None:
                return []
            return await self._alerts(
                [alert], await self.store.channels_for_instance(message.instance)
            )
        return []

    async def _job(self, message: JobResult | JobFailed | JobCancelled) -> list[str]:
        event = {JobResult: "job.completed", JobFailed: "job.failed",
                 JobCancelled: "job.cancelled"}[type(message)]  # fmt: skip
        channels = await self.store.channels_for_job(message.user_id, event)
        if not channels and not self.settings.grafana_url:
            return []
        facts = await self._facts(message, event)
        rows = [
            Pending(f"{c.id}:{event}:{message.job_id}", c.id, c.kind, event, c.user_id,
                    _job_payload(c.kind, facts))
            for c in channels
        ]  # fmt: skip
        if self.settings.grafana_url:
            rows.append(Pending(f"grafana:{event}:{message.job_id}", None, "grafana", event,
                                None, messages.grafana_job(facts)))  # fmt: skip
        await self.store.enqueue(rows)
        return [r.dedupe_key for r in rows]

    async def _facts(self, message: JobResult | JobFailed | JobCancelled, event: str) -> JobFacts:
        row = await self.store.job(message.job_id) or {}
        queued, running, finished = (
            row.get("queued_at"),
            row.get("running_at"),
            row.get("finished_at"),
        )
        backend, primitive = row.get("backend"), row.get("primitive")
        if isinstance(message, JobResult):
            m = message.metrics
            queued = queued or m.queued_at or m.created_at
            running, finished = running or m.running_at, finished or m.finished_at
            backend, primitive = backend or message.backend, primitive or message.primitive
            if message.primitive == "estimator":
                summary = messages.estimator_summary(
                    message.expectation_values, message.standard_errors
                )
            else:
                summary = messages.sampler_summary(message.counts)
        elif isinstance(message, JobFailed):
            summary = f"Reason: {message.reason}"
        else:
            summary = f"Cancelled{': ' + message.reason if message.reason else '.'}"
        return JobFacts(
            event=event, job_id=message.job_id, user_id=message.user_id, backend=backend,
            primitive=primitive, queued_at=queued, running_at=running, finished_at=finished,
            summary=summary, link=job_link(self.settings, message.job_id),
            tags=[t for t in (row.get("tags") or []) if ":" not in t],
        )  # fmt: skip

    async def _alerts(self, found: list[Alert], channels: list[Channel]) -> list[str]:
        rows = []
        for alert in found:
            stamp = f"{alert.kind}:{alert.subject}:{alert.at.isoformat()}"
            rows += [Pending(f"{c.id}:{stamp}", c.id, c.kind, alert.event, c.user_id,
                             _alert_payload(c.kind, alert)) for c in channels]  # fmt: skip
            if self.settings.grafana_url and alert.event == "backend.alert":
                rows.append(Pending(f"grafana:{stamp}", None, "grafana", alert.event, None,
                                    messages.grafana_alert(alert)))  # fmt: skip
            log.info("alert: %s", alert.title, extra={"kind": alert.kind, "subject": alert.subject})
        await self.store.enqueue(rows)
        return [r.dedupe_key for r in rows]

    # -- sends ---------------------------------------------------------------

    async def deliver(self, keys: list[str] | None = None) -> int:
        """Claim due rows (these keys only, if given) and send each once; how many."""
        claimed = await self.store.claim(self.settings.notifier_lease_s, CLAIM_BATCH, keys)
        await asyncio.gather(*(self._send(row) for row in claimed))
        return len(claimed)

    async def _send(self, row: Claimed) -> None:
        try:
            target = self._target(row)
        except Exception as exc:  # an undecryptable secret: nothing will make it work
            await self._give_up(row, f"cannot read the channel's settings: {type(exc).__name__}")
            return
        outcome = await send(target, row.payload, row.dedupe_key, row.kind)
        await self._record(row, outcome)

    async def _record(self, row: Claimed, outcome: Outcome) -> None:
        if outcome.delivered:
            await self.store.sent(row.id)
            DELIVERIES.labels(row.channel_kind, "sent").inc()
            return
        error = outcome.error or "unknown error"
        if outcome.permanent or row.attempts + 1 >= self.settings.notifier_max_attempts:
            why = (
                error
                if outcome.permanent
                else f"gave up after {row.attempts + 1} attempts: {error}"
            )
            await self._give_up(row, why)
            return
        wait = outcome.retry_after_s
        if wait is None:
            wait = min(2.0**row.attempts, self.settings.notifier_retry_max_s)
        await self.store.later(row.id, min(wait, self.settings.notifier_retry_max_s), error)
        DELIVERIES.labels(row.channel_kind, "retry").inc()
        log.info("delivery %s will be retried in %.1f s: %s", row.id, wait, error)

    async def _give_up(self, row: Claimed, why: str) -> None:
        await self.store.failed(row.id, row.channel.id if row.channel else None, why)
        DELIVERIES.labels(row.channel_kind, "failed").inc()
        FAILING.set(await self.store.failing_channels())
        log.warning(
            "notification channel failing; delivery %s given up: %s", row.id, why,
            extra={"channel_id": row.channel.id if row.channel else None},
        )  # fmt: skip

    def _target(self, row: Claimed) -> Target:
        if row.channel is None:
            token = self.settings.grafana_token
            return Target("grafana", url=self.settings.grafana_url,
                          token=token.get_secret_value() if token else None)  # fmt: skip
        if self.vault is None:
            raise RuntimeError("QJT_FERNET_KEYS is not set")
        channel = row.channel
        value = self.vault.decrypt(channel.target_ciphertext)
        register_secret(value)
        secret = (
            self.vault.decrypt(channel.secret_ciphertext) if channel.secret_ciphertext else None
        )
        register_secret(secret)
        if channel.kind == "slack_bot":
            return Target("slack_bot", token=value, slack_channel=channel.slack_channel,
                          url=self.settings.slack_api_url)  # fmt: skip
        return Target(channel.kind, url=value, secret=secret)

    async def retry_forever(self, stopping: asyncio.Event) -> None:
        """Send rows that are due again, until shutdown."""
        while not stopping.is_set():
            try:
                while await self.deliver() == CLAIM_BATCH and not stopping.is_set():
                    pass
            except Exception:  # keep the loop alive through a database blip
                log.exception("retrying deliveries failed; trying again shortly")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), RETRY_EVERY_S)


def job_link(settings: Settings, job_id: str) -> str:
    """Where a person opens the job: its page in the web console."""
    return f"{settings.public_url.rstrip('/')}/jobs/{job_id}"


def _job_payload(kind: str, facts: JobFacts) -> dict[str, Any]:
    return messages.webhook_job(facts) if kind == "webhook" else messages.slack_job(facts)


def _alert_payload(kind: str, alert: Alert) -> dict[str, Any]:
    return messages.webhook_alert(alert) if kind == "webhook" else messages.slack_alert(alert)
