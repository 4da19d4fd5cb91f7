"""When a backend or an instance deserves an alert. Pure functions of old and new state.

An alert fires on the change, not on every observation: a backend that stays down, a
queue that stays long, a calibration that stays worse than its baseline each alert once
until they recover. Thresholds come from settings (`QJT_ALERT_*`).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace

from qjt.contracts import BackendCalibration, BackendStatus, InstanceUsage
from services.notifier.messages import Alert


@dataclass(frozen=True)
class BackendAlertState:
    """What the notifier last concluded about a backend."""

    operational: bool = True
    queue_high: bool = False
    t1_degraded: bool = False
    readout_degraded: bool = False


def status_alerts(
    before: BackendAlertState, status: BackendStatus, queue_threshold: int
) -> tuple[BackendAlertState, list[Alert]]:
    """Went non-operational; queue rose to the threshold."""
    alerts = []
    if before.operational and not status.operational:
        reason = f" ({status.status_msg})" if status.status_msg else ""
        alerts.append(
            Alert("backend.alert", "non_operational", status.backend,
                  f"{status.backend} is not operational",
                  f"{status.backend} stopped accepting work{reason}; "
                  f"{status.pending_jobs} jobs are pending.", status.observed_at)
        )  # fmt: skip
    high = status.pending_jobs >= queue_threshold
    if high and not before.queue_high:
        alerts.append(
            Alert("backend.alert", "queue_high", status.backend,
                  f"{status.backend} queue at {status.pending_jobs} jobs",
                  f"{status.backend} has {status.pending_jobs} pending jobs "
                  f"(alert threshold {queue_threshold}).", status.observed_at)
        )  # fmt: skip
    return replace(before, operational=status.operational, queue_high=high), alerts


def medians(calibration: BackendCalibration) -> tuple[float | None, float | None]:
    """Median T1 (µs) and median readout error of one snapshot."""
    t1 = [q.t1_us for q in calibration.qubits if q.t1_us is not None]
    readout = [q.readout_error for q in calibration.qubits if q.readout_error is not None]
    return (
        statistics.median(t1) if t1 else None,
        statistics.median(readout) if readout else None,
    )


def calibration_alerts(
    before: BackendAlertState,
    calibration: BackendCalibration,
    baseline: tuple[float | None, float | None],
    factor: float,
) -> tuple[BackendAlertState, list[Alert]]:
    """Median T1 or readout error worse than the 7-day baseline by `factor`."""
    t1, readout = medians(calibration)
    base_t1, base_readout = baseline
    t1_bad = t1 is not None and base_t1 is not None and t1 * factor < base_t1
    readout_bad = (
        readout is not None and base_readout is not None and readout > base_readout * factor
    )
    alerts = []
    name, at = calibration.backend, calibration.calibrated_at
    if t1_bad and not before.t1_degraded:
        alerts.append(
            Alert("backend.alert", "t1_degraded", name, f"{name}: median T1 dropped",
                  f"Median T1 is {t1:.1f} µs against a 7-day baseline of {base_t1:.1f} µs "
                  f"(alert when worse by {factor:g}×).", at)
        )  # fmt: skip
    if readout_bad and not before.readout_degraded:
        alerts.append(
            Alert("backend.alert", "readout_degraded", name, f"{name}: readout error rose",
                  f"Median readout error is {readout:.4f} against a 7-day baseline of "
                  f"{base_readout:.4f} (alert when worse by {factor:g}×).", at)
        )  # fmt: skip
    return replace(before, t1_degraded=t1_bad, readout_degraded=readout_bad), alerts


def quota_alert(was_above: bool, usage: InstanceUsage, share: float) -> tuple[bool, Alert | None]:
    """Used quota crossed `share` of the instance's limit."""
    limit = usage.usage_limit_seconds
    if not limit:
        return False, None
    used = usage.usage_consumed_seconds / limit
    above = used >= share
    if not above or was_above:
        return above, None
    return above, Alert(
        "quota.alert", "quota", usage.instance, f"Instance quota {used:.0%} used",
        f"{usage.usage_consumed_seconds:.0f} s of {limit:.0f} s used on the instance "
        f"(alert at {share:.0%}).", usage.observed_at,
    )  # fmt: skip
