"""Notifier rules: when alerts fire, how HTTP answers are read, what messages say."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from qjt.contracts import BackendCalibration, BackendStatus, InstanceUsage, QubitCalibration
from services.notifier.alerts import (
    BackendAlertState,
    calibration_alerts,
    quota_alert,
    status_alerts,
)
from services.notifier.delivery import by_status, retry_after, sign
from services.notifier.messages import JobFacts, escape, sampler_summary, slack_job

T0 = datetime(2026, 11, 20, tzinfo=UTC)


def test_status_alerts_fire_on_the_change_only() -> None:
    state = BackendAlertState()
    seen = []
    for operational, pending in [(True, 5), (False, 5), (False, 6), (True, 120), (True, 130),
                                 (True, 10), (True, 101)]:  # fmt: skip
        status = BackendStatus(backend="b", operational=operational, pending_jobs=pending,
                               observed_at=T0)  # fmt: skip
        state, alerts = status_alerts(state, status, queue_threshold=100)
        seen += [a.kind for a in alerts]
    assert seen == ["non_operational", "queue_high", "queue_high"]


def test_calibration_alert_needs_a_baseline_and_the_factor() -> None:
    snapshot = BackendCalibration(backend="b", calibrated_at=T0, qubits=[
        QubitCalibration(qubit=q, t1_us=100, readout_error=0.05) for q in range(3)])  # fmt: skip
    _, none = calibration_alerts(BackendAlertState(), snapshot, (None, None), 1.5)
    _, mild = calibration_alerts(BackendAlertState(), snapshot, (140, 0.04), 1.5)
    state, both = calibration_alerts(BackendAlertState(), snapshot, (200, 0.02), 1.5)
    assert none == [] and mild == []
    assert [a.kind for a in both] == ["t1_degraded", "readout_degraded"]
    _, repeat = calibration_alerts(state, snapshot, (200, 0.02), 1.5)
    assert repeat == []


def test_quota_alert_when_the_share_is_crossed() -> None:
    def usage(used: float) -> InstanceUsage:
        return InstanceUsage(instance="crn", usage_consumed_seconds=used,
                             usage_limit_seconds=100, observed_at=T0)  # fmt: skip

    above, alert = quota_alert(False, usage(85), 0.8)
    assert above and alert is not None and "85%" in alert.title
    assert quota_alert(True, usage(90), 0.8) == (True, None)
    assert quota_alert(True, usage(10), 0.8) == (False, None)


def test_http_answers_are_read_as_done_later_or_never() -> None:
    assert by_status(200, {}, "").delivered
    later = by_status(429, {"Retry-After": "7"}, "slow down")
    assert not later.delivered and not later.permanent and later.retry_after_s == 7
    assert by_status(503, {}, "").permanent is False
    assert by_status(404, {}, "no").permanent is True
    assert retry_after({"retry-after": ["3"]}) == 3 and retry_after({"x": "1"}) is None
    assert sign("k", "1", b"{}") == sign("k", "1", b"{}") != sign("k", "2", b"{}")


def test_job_message_escapes_and_summarises() -> None:
    facts = JobFacts("job.failed", "j1", "u", "ibm_fez", "sampler", T0,
                     T0 + timedelta(seconds=30), T0 + timedelta(seconds=31),
                     "Reason: <!here> & <b>", "http://x/j1")  # fmt: skip
    message = slack_job(facts)
    section = message["blocks"][2]["text"]["text"]
    assert section == "Reason: &lt;!here&gt; &amp; &lt;b&gt;" == escape(facts.summary)
    assert message["blocks"][0]["text"]["text"] == "❌ Job failed"
    assert sampler_summary([{"1": 3, "0": 1}]) == "Most frequent outcomes: `1` 75.0%, `0` 25.0%"
