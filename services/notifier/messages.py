"""What the notifier says: Slack Block Kit messages, webhook bodies, Grafana annotations.

Pure functions from facts to JSON-ready dicts. Text that came from users or IBM (reasons,
tags) is escaped for Slack's mrkdwn, so it cannot ping a channel or forge a link.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

JOB_EVENTS = ("job.completed", "job.failed", "job.cancelled")
ALERT_EVENTS = ("backend.alert", "quota.alert")
EVENTS = (*JOB_EVENTS, *ALERT_EVENTS)
HEADLINE = {"job.completed": "✅ Job completed", "job.failed": "❌ Job failed",
            "job.cancelled": "⏹️ Job cancelled"}  # fmt: skip


@dataclass(frozen=True)
class JobFacts:
    """A job's final state, as a notification tells it."""

    event: str  # one of JOB_EVENTS
    job_id: str
    user_id: str
    backend: str | None
    primitive: str | None
    queued_at: datetime | None
    running_at: datetime | None
    finished_at: datetime | None
    summary: str
    link: str
    tags: list[str] = field(default_factory=list)

    @property
    def queue_s(self) -> float | None:
        if self.queued_at and self.running_at:
            return max((self.running_at - self.queued_at).total_seconds(), 0.0)
        return None

    @property
    def run_s(self) -> float | None:
        if self.running_at and self.finished_at:
            return max((self.finished_at - self.running_at).total_seconds(), 0.0)
        return None


@dataclass(frozen=True)
class Alert:
    """Something ops should know about a backend or an instance."""

    event: str  # backend.alert or quota.alert
    kind: str  # non_operational, queue_high, t1_degraded, readout_degraded, quota
    subject: str  # backend name or instance CRN
    title: str
    detail: str
    at: datetime


def escape(text: str) -> str:
    """Slack mrkdwn escaping: &, < and > only (as Slack documents)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def sampler_summary(counts: list[dict[str, int]] | None) -> str:
    """The first circuit's most frequent outcomes with their probabilities."""
    if not counts:
        return "No counts returned."
    first = counts[0]
    total = sum(first.values()) or 1
    top = sorted(first.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    parts = [f"`{bits}` {n / total:.1%}" for bits, n in top]
    more = f" ({len(counts)} circuits; first shown)" if len(counts) > 1 else ""
    return f"Most frequent outcomes: {', '.join(parts)}{more}"


def estimator_summary(values: list[float] | None, errors: list[float] | None) -> str:
    if not values:
        return "No expectation values returned."
    shown = []
    for i, value in enumerate(values[:3]):
        error = errors[i] if errors and i < len(errors) else None
        shown.append(f"{value:+.4f} ± {error:.4f}" if error is not None else f"{value:+.4f}")
    more = f" (+{len(values) - 3} more)" if len(values) > 3 else ""
    return f"Expectation values: {', '.join(shown)}{more}"


def slack_job(facts: JobFacts) -> dict[str, Any]:
    """Block Kit message for a job's final state."""
    headline = HEADLINE[facts.event]
    fields = [
        ("Job", f"`{facts.job_id}`"),
        ("Backend", escape(facts.backend or "unknown")),
        ("Primitive", escape(facts.primitive or "unknown")),
        ("Queue time", duration(facts.queue_s)),
        ("Run time", duration(facts.run_s)),
    ]
    if facts.tags:
        fields.append(("Tags", escape(", ".join(facts.tags))))
    return {
        "text": f"{headline}: {facts.job_id} on {facts.backend or 'unknown'}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": headline}},
            {
                "type": "section",
                "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in fields],
            },
            {"type": "section", "text": {"type": "mrkdwn", "text": escape(facts.summary)}},
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open job"},
                        "url": facts.link,
                    }
                ],
            },
        ],
    }


def slack_alert(alert: Alert) -> dict[str, Any]:
    """Block Kit message for a backend or quota alert."""
    icon = "📈" if alert.kind in ("queue_high", "quota") else "⚠️"
    return {
        "text": f"{icon} {alert.title}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": f"{icon} {alert.title}"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": escape(alert.detail)}},
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": f"{escape(alert.subject)} · {alert.at.isoformat()}"}
                ],
            },
        ],
    }


def webhook_job(facts: JobFacts) -> dict[str, Any]:
    return {
        "event": facts.event,
        "job": {
            "id": facts.job_id,
            "backend": facts.backend,
            "primitive": facts.primitive,
            "queued_at": _iso(facts.queued_at),
            "running_at": _iso(facts.running_at),
            "finished_at": _iso(facts.finished_at),
            "queue_seconds": facts.queue_s,
            "run_seconds": facts.run_s,
            "tags": facts.tags,
            "summary": facts.summary,
            "url": facts.link,
        },
    }


def webhook_alert(alert: Alert) -> dict[str, Any]:
    return {
        "event": alert.event,
        "alert": {
            "kind": alert.kind,
            "subject": alert.subject,
            "title": alert.title,
            "detail": alert.detail,
            "at": alert.at.isoformat(),
        },
    }


def grafana_job(facts: JobFacts) -> dict[str, Any]:
    moment = facts.finished_at or facts.running_at or facts.queued_at
    return {
        "time": int(moment.timestamp() * 1000) if moment else None,
        "tags": ["qjt", facts.event, f"backend:{facts.backend or 'unknown'}"],
        "text": f"{HEADLINE[facts.event]}: {facts.job_id} on {facts.backend or 'unknown'}",
    }


def grafana_alert(alert: Alert) -> dict[str, Any]:
    return {
        "time": int(alert.at.timestamp() * 1000),
        "tags": ["qjt", alert.event, alert.kind, f"backend:{alert.subject}"],
        "text": f"{alert.title}: {alert.detail}",
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
