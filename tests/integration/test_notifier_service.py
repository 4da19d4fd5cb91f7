"""The notifier as its own process on real NATS and PostgreSQL, posting over real HTTP
to a local server standing in for Slack, webhook receivers and Grafana.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bench.fleet import store_events
from qjt.bus import Bus
from qjt.contracts import (
    BackendCalibration,
    BackendStatus,
    InstanceUsage,
    JobFailed,
    JobMetrics,
    JobResult,
    Message,
    QubitCalibration,
)
from qjt.db import migrate, open_pool
from qjt.devstack import NatsServer
from qjt.vault import Vault
from tests.conftest import make_settings
from tests.helpers.fake_slack import FakeSlack
from tests.helpers.stack import ServiceStack, wait_until

T0 = datetime(2026, 11, 20, 12, tzinfo=UTC)
USER = "user-notified"


@dataclass
class Setup:
    bus: Bus
    database: str
    slack: FakeSlack
    stack: ServiceStack

    def add_channel(self, kind: str, target: str, **fields: Any) -> int:
        """A channel as the API stores it (encrypted target)."""
        vault = Vault([self.stack.fernet_key])
        secret = fields.pop("secret", None)
        values = {
            "kind": kind, "name": "", "scope": fields.pop("scope", "mine"),
            "events": fields.pop("events", ["job.completed", "job.failed", "job.cancelled"]),
            "backends": [], "target_ciphertext": vault.encrypt(target), "target_hint": "x",
            "slack_channel": fields.pop("slack_channel", None),
            "secret_ciphertext": vault.encrypt(secret) if secret else None,
        }  # fmt: skip
        with psycopg.connect(self.database) as conn:
            row = conn.execute(
                """INSERT INTO notification_channels (user_id, kind, name, scope, events,
                     backends, target_ciphertext, target_hint, slack_channel, secret_ciphertext)
                   VALUES (%(user)s, %(kind)s, %(name)s, %(scope)s, %(events)s, %(backends)s,
                     %(target_ciphertext)s, %(target_hint)s, %(slack_channel)s,
                     %(secret_ciphertext)s) RETURNING id""",
                {"user": USER, **values},
            ).fetchone()
        assert row is not None
        return int(row[0])

    async def publish(self, *messages: Message) -> None:
        for message in messages:
            await self.bus.publish(message)

    def channel(self, channel_id: int) -> tuple[str, str | None]:
        with psycopg.connect(self.database) as conn:
            row = conn.execute(
                "SELECT status, failure FROM notification_channels WHERE id = %s", (channel_id,)
            ).fetchone()
        assert row is not None
        return str(row[0]), row[1]


@pytest.fixture
async def setup(make_database: Callable[[], str], tmp_path: Path) -> AsyncIterator[Setup]:
    database = make_database()
    migrate(database)
    slack = FakeSlack().start()
    nats = NatsServer(tmp_path / "nats").start()
    bus = await Bus.connect(make_settings(nats_url=nats.url))
    await bus.ensure_streams()
    stack = ServiceStack(
        nats=nats, database=database, ibm_url="http://127.0.0.1:9", log_dir=tmp_path / "logs",
        extra_env={"QJT_ACK_WAIT_S": "2", "QJT_NOTIFIER_LEASE_S": "3",
                   "QJT_NOTIFIER_MAX_ATTEMPTS": "3", "QJT_GRAFANA_URL": slack.url,
                   "QJT_PUBLIC_URL": "http://console.test"},
        services=(),
    )  # fmt: skip
    try:
        yield Setup(bus, database, slack, stack)
    finally:
        await bus.close()
        stack.stop()
        nats.stop()
        slack.stop()
        assert "xoxb-secret" not in stack.all_logs()


def result(job_id: str, backend: str = "ibm_fez") -> JobResult:
    return JobResult(
        job_id=job_id, user_id=USER, ibm_job_id=f"ibm-{job_id}", backend=backend,
        primitive="sampler", counts=[{"00": 510, "11": 490, "01": 24}],
        metrics=JobMetrics(created_at=T0, running_at=T0 + timedelta(seconds=95),
                           finished_at=T0 + timedelta(seconds=101)),
    )  # fmt: skip


def again(message: Message) -> Message:
    """The same event published anew (a second message id), as a redelivery would be."""
    return message.model_copy(update={"id": f"{message.id}:again:{uuid.uuid4().hex[:6]}"})


def start(setup: Setup) -> None:
    """Start (or restart) the notifier and wait until it serves."""
    setup.stack.start("notifier")
    setup.stack.wait_healthy("notifier")


async def test_a_finished_job_gives_exactly_one_post_with_its_details(setup: Setup) -> None:
    hook = setup.slack.script("/hooks/team", "200")
    setup.add_channel("slack_webhook", hook)
    start(setup)
    event = result("job-done-1")
    await setup.publish(event, again(event))
    [post] = wait_until(lambda: setup.slack.posts("/hooks/team"), 20, "the Slack post")
    time.sleep(2)  # room for a duplicate to show up, which must not
    assert len(setup.slack.posts("/hooks/team")) == 1
    text = json.dumps(post.body)
    assert post.body["blocks"][0]["text"]["text"] == "✅ Job completed"
    link = "http://console.test/jobs/job-done-1"
    for expected in ("job-done-1", "ibm_fez", "sampler", "*Queue time*\\n1.6 min",
                     "*Run time*\\n6.0 s", "`00` 49.8%", link):  # fmt: skip
        assert expected in text, expected
    annotation = wait_until(lambda: setup.slack.posts("/api/annotations"), 20, "annotation")
    assert "job.completed" in annotation[0].body["tags"]


async def test_429_then_success_is_one_post_after_retry_after(setup: Setup) -> None:
    hook = setup.slack.script("/hooks/busy", "429:2", "200")
    setup.add_channel("slack_webhook", hook)
    start(setup)
    await setup.publish(result("job-busy"))
    wait_until(lambda: setup.slack.posts("/hooks/busy"), 30, "the post after the 429")
    first, second = setup.slack.attempts("/hooks/busy")[:2]
    assert first.status == 429 and second.status == 200
    assert second.at - first.at >= 1.9  # Slack's Retry-After was honoured
    time.sleep(1.5)
    assert len(setup.slack.posts("/hooks/busy")) == 1


async def test_killed_after_posting_before_ack_still_posts_once(setup: Setup) -> None:
    hook = setup.slack.script("/hooks/kill", "200", "hold", "200")
    setup.add_channel("slack_webhook", hook)
    # Both events wait in the stream, so the notifier takes them in one batch: the first
    # is posted, the second post hangs, and nothing is acked yet when it is killed.
    await setup.publish(result("job-kill-1"), result("job-kill-2"))
    start(setup)
    wait_until(lambda: setup.slack.holding("/hooks/kill"), 20, "the second post in flight")
    assert len(setup.slack.posts("/hooks/kill")) == 1
    setup.stack.procs["notifier"].send_signal(signal.SIGKILL)
    setup.stack.procs["notifier"].wait(10)
    setup.slack.release()  # the held request's client is gone: Slack never accepted it
    start(setup)
    posts = wait_until(
        lambda: len(p := setup.slack.posts("/hooks/kill")) >= 2 and p, 30, "both jobs posted"
    )
    time.sleep(5)  # past the redelivery and the lease: no duplicate appears
    jobs = [json.dumps(p.body) for p in setup.slack.posts("/hooks/kill")]
    assert sum("job-kill-1" in j for j in jobs) == 1, jobs
    assert sum("job-kill-2" in j for j in jobs) == 1, jobs
    assert len(posts) == 2


async def test_a_permanently_failing_channel_is_reported_not_retried(setup: Setup) -> None:
    gone = setup.add_channel("slack_webhook", setup.slack.script("/hooks/gone", "404:no_service"))
    down = setup.add_channel("slack_webhook", setup.slack.script("/hooks/down", "503"))
    start(setup)
    await setup.publish(result("job-x"))
    wait_until(lambda: setup.channel(gone)[0] == "failing", 20, "the 404 channel reported")
    assert "no_service" in (setup.channel(gone)[1] or "")
    wait_until(lambda: setup.channel(down)[0] == "failing", 40, "the 503 channel given up")
    assert "gave up after 3 attempts" in (setup.channel(down)[1] or "")
    time.sleep(3)
    assert len(setup.slack.attempts("/hooks/gone")) == 1
    assert len(setup.slack.attempts("/hooks/down")) == 3
    await setup.publish(result("job-y"))  # a failing channel is not used again
    time.sleep(2)
    assert len(setup.slack.attempts("/hooks/gone")) == 1
    assert "notification channel failing" in setup.stack.log("notifier")


async def test_webhooks_are_signed_and_bot_tokens_reach_chat_post_message(setup: Setup) -> None:
    secret = "whsec-test-0123456789"
    url = setup.slack.script("/receiver", "200")
    setup.add_channel("webhook", url, secret=secret, events=["job.failed"])
    setup.add_channel("slack_bot", "xoxb-secret-token", slack_channel="#quantum",
                      events=["job.failed"])  # fmt: skip
    setup.stack.env["QJT_SLACK_API_URL"] = f"{setup.slack.url}/api/"
    start(setup)
    await setup.publish(JobFailed(job_id="job-f", user_id=USER, reason="<!channel> bad <circuit>"))
    [hook] = wait_until(lambda: setup.slack.posts("/receiver"), 20, "the webhook")
    stamp = hook.headers["x-qjt-timestamp"]
    expected = hmac.new(secret.encode(), stamp.encode() + b"." + hook.raw, hashlib.sha256)
    assert hook.headers["x-qjt-signature"] == f"sha256={expected.hexdigest()}"
    assert hook.body["event"] == "job.failed" and hook.body["job"]["id"] == "job-f"
    assert hook.headers["x-qjt-delivery"] == hook.body["id"]
    [bot] = wait_until(lambda: setup.slack.posts("/api/chat.postMessage"), 20, "the bot post")
    assert bot.headers["authorization"] == "Bearer xoxb-secret-token"
    assert bot.body["channel"] == "#quantum"
    blocks = (
        json.loads(bot.body["blocks"])
        if isinstance(bot.body["blocks"], str)
        else bot.body["blocks"]
    )
    assert "&lt;!channel&gt; bad &lt;circuit&gt;" in json.dumps(blocks)  # escaped: no ping


def status(backend: str, minute: int, operational: bool, pending: int) -> BackendStatus:
    return BackendStatus(backend=backend, operational=operational, pending_jobs=pending,
                         observed_at=T0 + timedelta(minutes=minute))  # fmt: skip


def calibration(backend: str, day: int, t1: float, readout: float) -> BackendCalibration:
    return BackendCalibration(
        backend=backend, calibrated_at=T0 + timedelta(days=day),
        qubits=[QubitCalibration(qubit=q, t1_us=t1 + q, t2_us=t1, readout_error=readout)
                for q in range(5)],
    )  # fmt: skip


async def test_backend_and_quota_alerts_fire_once_per_change(setup: Setup) -> None:
    hook = setup.slack.script("/hooks/ops", "200")
    setup.add_channel("slack_webhook", hook, scope="all", events=["backend.alert", "quota.alert"])
    pool = open_pool(setup.database, 2)
    await pool.open()
    await store_events(pool, [calibration("ibm_kyiv", -d, 250, 0.01) for d in range(1, 6)])
    await pool.close()
    start(setup)
    await setup.publish(
        status("ibm_kyiv", 0, True, 5), status("ibm_kyiv", 1, False, 5),
        status("ibm_kyiv", 2, False, 7), status("ibm_kyiv", 3, True, 150),
        status("ibm_kyiv", 4, True, 160), calibration("ibm_kyiv", 0, 100, 0.01),
        InstanceUsage(instance="crn:v1:x", usage_consumed_seconds=500,
                      usage_limit_seconds=600, observed_at=T0),
        InstanceUsage(instance="crn:v1:x", usage_consumed_seconds=550,
                      usage_limit_seconds=600, observed_at=T0 + timedelta(minutes=5)),
    )  # fmt: skip
    wait_until(lambda: len(setup.slack.posts("/hooks/ops")) >= 4, 30, "four alerts")
    time.sleep(2)
    titles = sorted(p.body["text"] for p in setup.slack.posts("/hooks/ops"))
    assert titles == sorted([
        "⚠️ ibm_kyiv is not operational", "📈 ibm_kyiv queue at 150 jobs",
        "⚠️ ibm_kyiv: median T1 dropped", "📈 Instance quota 83% used",
    ]), titles  # fmt: skip
    annotations = [p.body for p in setup.slack.posts("/api/annotations")]
    assert any("non_operational" in a["tags"] for a in annotations)


async def test_two_replicas_post_each_job_once(setup: Setup) -> None:
    hook = setup.slack.script("/hooks/many", "200")
    setup.add_channel("slack_webhook", hook)
    start(setup)
    first = setup.stack.procs["notifier"]
    start(setup)
    setup.stack.procs["notifier-2"] = first  # both replicas run; both are stopped at the end
    events = [result(f"job-many-{i}") for i in range(20)]
    await setup.publish(*events, *(again(e) for e in events))
    wait_until(lambda: len(setup.slack.posts("/hooks/many")) >= 20, 40, "twenty posts")
    time.sleep(3)
    bodies = [json.dumps(p.body) for p in setup.slack.posts("/hooks/many")]
    assert len(bodies) == 20
    for i in range(20):
        assert sum(f"job-many-{i}`" in b for b in bodies) == 1
