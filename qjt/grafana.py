"""Grafana dashboards as code, and pushing them to a running Grafana.

Three dashboards: Overview (jobs and queues), Backend analytics (calibration: T1/T2,
readout and gate errors, stability, with backend, qubit and metric variables) and
Operations (the services' own metrics from Prometheus). `qjt grafana export` writes them
to `deploy/grafana/dashboards/` (what docker compose provisions; a test keeps the files
equal to this module); `qjt grafana provision` creates the data sources if missing and
pushes the dashboards with grafana-client (3.x: 4.x brings niquests, which replaces the
urllib3 that requests, and so qiskit-ibm-runtime, run on).

Every SQL panel runs on plain PostgreSQL and on TimescaleDB: long ranges read the
per-snapshot and per-hour summary tables the recorder keeps (`calibration_snapshots`,
`backend_status_hourly`), per-qubit panels read one backend's rows by index.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException

PG = {"type": "grafana-postgresql-datasource", "uid": "qjt-postgres"}
PROM = {"type": "prometheus", "uid": "qjt-prometheus"}
DASHBOARD_DIR = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "dashboards"
DISPLAY_STATUS_SQL = """CASE
  WHEN status IN ('ACCEPTED', 'INITIALIZING', 'VALIDATING', 'QUEUED') THEN 'Queued'
  WHEN status = 'RUNNING' THEN 'Running' WHEN status = 'DONE' THEN 'Completed'
  WHEN status = 'ERROR' THEN 'Failed' ELSE 'Cancelled' END"""


def _grid(n: int, w: int = 12, h: int = 8) -> dict[str, int]:
    per_row = 24 // w
    return {"x": (n % per_row) * w, "y": (n // per_row) * h, "w": w, "h": h}


def sql_panel(
    n: int, title: str, kind: str, sql: str, *, table: bool = False, unit: str | None = None,
    w: int = 12, options: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """A panel over PostgreSQL (`table`: rows as they come, else a time series)."""
    panel: dict[str, Any] = {
        "id": n + 1,
        "type": kind,
        "title": title,
        "gridPos": _grid(n, w),
        "datasource": PG,
        "targets": [
            {
                "refId": "A",
                "datasource": PG,
                "editorMode": "code",
                "format": "table" if table else "time_series",
                "rawQuery": True,
                "rawSql": sql.strip(),
            }
        ],
        "fieldConfig": {"defaults": {"unit": unit} if unit else {}, "overrides": []},
        "options": options or {},
    }
    return panel


def prom_panel(
    n: int, title: str, exprs: dict[str, str], *, kind: str = "timeseries", unit: str | None = None
) -> dict[str, Any]:
    return {
        "id": n + 1,
        "type": kind,
        "title": title,
        "gridPos": _grid(n, 8, 7),
        "datasource": PROM,
        "targets": [
            {"refId": chr(65 + i), "datasource": PROM, "expr": expr, "legendFormat": legend}
            for i, (legend, expr) in enumerate(exprs.items())
        ],
        "fieldConfig": {"defaults": {"unit": unit} if unit else {}, "overrides": []},
        "options": {},
    }


def dashboard(
    uid: str, title: str, panels: list[dict[str, Any]], *,
    variables: Sequence[dict[str, Any]] = (),
    time_from: str = "now-7d", tags: tuple[str, ...] = (),
) -> dict[str, Any]:  # fmt: skip
    return {
        "uid": uid,
        "title": title,
        "tags": ["qjt", *tags],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "1m",
        "time": {"from": time_from, "to": "now"},
        "templating": {"list": list(variables)},
        "panels": panels,
    }


def query_variable(name: str, label: str, sql: str, *, multi: bool = False) -> dict[str, Any]:
    return {
        "name": name, "label": label, "type": "query", "datasource": PG, "query": sql,
        "definition": sql, "refresh": 2, "multi": multi, "includeAll": multi,
        "allValue": None, "sort": 3 if name == "qubit" else 1,
    }  # fmt: skip


API_LATENCY = "sum by (le) (rate(qjt_api_request_seconds_bucket[5m]))"
METRICS = {"t1_us": "T1 (µs)", "t2_us": "T2 (µs)", "readout_error": "Readout error"}

OVERVIEW = dashboard(
    "qjt-overview",
    "Quantum Job Tracker · Overview",
    [
        sql_panel(
            0,
            "Job status distribution",
            "piechart",
            f"""
SELECT {DISPLAY_STATUS_SQL} AS status, count(*) AS jobs
FROM jobs WHERE $__timeFilter(created_at)
GROUP BY 1 ORDER BY 1""",
            table=True,
            options={"pieType": "donut"},
        ),
        sql_panel(
            1,
            "Jobs submitted per backend",
            "timeseries",
            """
SELECT $__timeGroupAlias(created_at, $__interval), backend AS metric, count(*) AS jobs
FROM jobs WHERE $__timeFilter(created_at)
GROUP BY 1, 2 ORDER BY 1""",
        ),
        sql_panel(
            2,
            "Queue length per backend (hourly maximum)",
            "timeseries",
            """
SELECT bucket AS "time", backend AS metric, max_pending_jobs AS pending_jobs
FROM backend_status_hourly WHERE $__timeFilter(bucket)
ORDER BY 1""",
        ),
        sql_panel(
            3,
            "Least busy operational backends now",
            "table",
            """
SELECT s.backend, s.pending_jobs, s.observed_at AS as_of
FROM (SELECT DISTINCT ON (backend) backend, operational, pending_jobs, observed_at
      FROM backend_status
      WHERE observed_at > (SELECT max(observed_at) FROM backend_status) - interval '1 hour'
      ORDER BY backend, observed_at DESC) s
WHERE s.operational
ORDER BY s.pending_jobs, s.backend LIMIT 10""",
            table=True,
        ),
        sql_panel(
            4,
            "Quantum seconds used per backend",
            "barchart",
            """
SELECT backend, round(sum(quantum_seconds)::numeric, 1) AS quantum_seconds
FROM jobs WHERE $__timeFilter(finished_at) AND quantum_seconds IS NOT NULL
GROUP BY 1 ORDER BY 2 DESC LIMIT 20""",
            table=True,
            unit="s",
        ),
        sql_panel(
            5,
            "Completed and failed jobs per day",
            "timeseries",
            f"""
SELECT $__timeGroupAlias(finished_at, 1d), {DISPLAY_STATUS_SQL} AS metric, count(*) AS jobs
FROM jobs WHERE $__timeFilter(finished_at) AND status IN ('DONE', 'ERROR', 'CANCELLED')
GROUP BY 1, 2 ORDER BY 1""",
        ),
    ],
    tags=("jobs",),
)

BACKEND_ANALYTICS = dashboard(
    "qjt-backend-analytics",
    "Quantum Job Tracker · Backend analytics",
    [
        sql_panel(
            0,
            "T1 vs T2 (each qubit, each snapshot)",
            "xychart",
            """
SELECT t1_us AS "T1 (µs)", t2_us AS "T2 (µs)"
FROM qubit_calibration
WHERE backend = '$backend' AND $__timeFilter(calibrated_at) AND qubit IN ($qubit)
  AND t1_us IS NOT NULL AND t2_us IS NOT NULL
ORDER BY calibrated_at DESC LIMIT 20000""",
            table=True,
        ),
        sql_panel(
            1,
            "Median T1 and T2 over time",
            "timeseries",
            """
SELECT calibrated_at AS "time", t1_median_us AS "median T1 (µs)", t2_median_us AS "median T2 (µs)"
FROM calibration_snapshots
WHERE backend = '$backend' AND $__timeFilter(calibrated_at)
ORDER BY 1""",
            unit="µs",
        ),
        sql_panel(
            2,
            "$metric per qubit over time",
            "timeseries",
            """
SELECT calibrated_at AS "time", 'q' || qubit AS metric, ${metric:raw} AS value
FROM qubit_calibration
WHERE backend = '$backend' AND $__timeFilter(calibrated_at) AND qubit IN ($qubit)
ORDER BY 1""",
        ),
        sql_panel(
            3,
            "Readout error across backends (median)",
            "barchart",
            """
SELECT backend, percentile_cont(0.5) WITHIN GROUP (ORDER BY readout_error_median)
         AS readout_error
FROM calibration_snapshots WHERE $__timeFilter(calibrated_at)
GROUP BY backend ORDER BY 2 LIMIT 100""",
            table=True,
            unit="percentunit",
        ),
        sql_panel(
            4,
            "Gate errors across backends (median)",
            "barchart",
            """
SELECT backend,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY one_qubit_error_median) AS "1-qubit",
       percentile_cont(0.5) WITHIN GROUP (ORDER BY two_qubit_error_median) AS "2-qubit"
FROM calibration_snapshots WHERE $__timeFilter(calibrated_at)
GROUP BY backend ORDER BY 3 NULLS LAST LIMIT 100""",
            table=True,
            unit="percentunit",
        ),
        sql_panel(
            5,
            "Calibration stability per qubit (coefficient of variation)",
            "table",
            """
SELECT qubit,
       round((stddev_samp(t1_us) / NULLIF(avg(t1_us), 0))::numeric, 4) AS t1_cv,
       round((stddev_samp(t2_us) / NULLIF(avg(t2_us), 0))::numeric, 4) AS t2_cv,
       round((stddev_samp(readout_error) / NULLIF(avg(readout_error), 0))::numeric, 4)
         AS readout_cv,
       count(*) AS snapshots
FROM qubit_calibration
WHERE backend = '$backend' AND $__timeFilter(calibrated_at) AND qubit IN ($qubit)
GROUP BY qubit ORDER BY t1_cv DESC NULLS LAST""",
            table=True,
        ),
        sql_panel(
            6,
            "Faulty qubits and 2-qubit error over time",
            "timeseries",
            """
SELECT calibrated_at AS "time", faulty_qubits AS "faulty qubits",
       two_qubit_error_median AS "median 2-qubit error"
FROM calibration_snapshots
WHERE backend = '$backend' AND $__timeFilter(calibrated_at)
ORDER BY 1""",
        ),
    ],
    variables=[
        query_variable(
            "backend", "Backend", "SELECT DISTINCT backend FROM backend_config ORDER BY 1"
        ),
        query_variable(
            "qubit",
            "Qubit",
            "SELECT generate_series(0, (SELECT num_qubits - 1 "
            "FROM backend_config WHERE backend = '$backend' "
            "ORDER BY observed_at DESC LIMIT 1))",
            multi=True,
        ),
        {
            "name": "metric",
            "label": "Metric",
            "type": "custom",
            "query": ",".join(f"{label} : {key}" for key, label in METRICS.items()),
            "current": {"text": "T1 (µs)", "value": "t1_us"},
            "options": [
                {"text": label, "value": key, "selected": key == "t1_us"}
                for key, label in METRICS.items()
            ],
        },
    ],
    time_from="now-30d",
    tags=("calibration",),
)

OPERATIONS = dashboard(
    "qjt-operations",
    "Quantum Job Tracker · Operations",
    [
        prom_panel(0, "Services up", {"up": 'sum(up{job="qjt"})'}, kind="stat"),
        prom_panel(
            1,
            "Events published per second",
            {"{{type}}": "sum by (type) (rate(qjt_bus_published_total[5m]))"},
        ),
        prom_panel(
            2,
            "Events consumed per second",
            {"{{durable}}": "sum by (durable) (rate(qjt_bus_consumed_total[5m]))"},
        ),
        prom_panel(
            3,
            "Consumer lag (messages waiting)",
            {"{{durable}}": "max by (durable) (qjt_bus_consumer_pending)"},
        ),
        prom_panel(
            4,
            "Poll latency p95 by call",
            {
                "{{call}}": "histogram_quantile(0.95, sum by "
                "(le, call) (rate(qjt_poller_ibm_call_seconds_bucket[5m])))"
            },
            unit="s",
        ),
        prom_panel(
            5,
            "IBM errors per second",
            {"{{call}}": "sum by (call) (rate(qjt_poller_ibm_errors_total[5m]))"},
        ),
        prom_panel(
            6,
            "API latency p50 / p99",
            {
                "p50": f"histogram_quantile(0.5, {API_LATENCY})",
                "p99": f"histogram_quantile(0.99, {API_LATENCY})",
            },
            unit="s",
        ),
        prom_panel(
            7,
            "API requests per second by status",
            {"{{status}}": "sum by (status) (rate(qjt_api_request_seconds_count[5m]))"},
        ),
        prom_panel(
            8,
            "Job states recorded per minute",
            {"{{state}}": "sum by (state) (rate(qjt_recorder_job_states_total[5m])) * 60"},
        ),
        prom_panel(
            9,
            "Dead-lettered messages",
            {"{{durable}}": "sum by (durable) (increase(qjt_bus_dead_lettered_total[15m]))"},
        ),
        prom_panel(
            10,
            "Batch handling time p95",
            {
                "{{durable}}": "histogram_quantile(0.95, sum by (le, durable) "
                "(rate(qjt_bus_handle_seconds_bucket[5m])))"
            },
            unit="s",
        ),
        prom_panel(
            11,
            "Notifications by outcome",
            {
                "{{outcome}}": "sum by (outcome) (increase(qjt_notifier_deliveries_total[15m]))",
                "failing channels": "max(qjt_notifier_failing_channels)",
            },
        ),
    ],
    time_from="now-6h",
    tags=("operations",),
)

DASHBOARDS = {
    "overview": OVERVIEW,
    "backend-analytics": BACKEND_ANALYTICS,
    "operations": OPERATIONS,
}


_GROUP = re.compile(r"\$__timeGroup(Alias)?\(\s*([^,]+?)\s*,\s*([^)]+?)\s*\)")
_FILTER = re.compile(r"\$__timeFilter\(\s*([^)]+?)\s*\)")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(text: str, interval_s: int) -> int:
    text = text.strip().strip("'")
    if text == "$__interval":
        return interval_s
    return int(text[:-1]) * _UNITS[text[-1]]


def expand(
    sql: str, start: datetime, end: datetime, variables: dict[str, str | list[str]],
    interval_s: int = 3600,
) -> str:  # fmt: skip
    """The SQL Grafana sends for a panel: its macros and variables replaced as Grafana does
    (PostgreSQL data source: `$__timeFilter`, `$__timeGroup[Alias]`, `$__interval`; a
    multi-value variable becomes a quoted, comma-separated list; `${name:raw}` as is)."""
    out = _FILTER.sub(
        lambda m: f"{m.group(1)} BETWEEN '{start.isoformat()}' AND '{end.isoformat()}'", sql
    )

    def group(m: re.Match[str]) -> str:
        seconds = _seconds(m.group(3), interval_s)
        grouped = f"floor(extract(epoch from {m.group(2)})/{seconds})*{seconds}"
        return f'{grouped} AS "time"' if m.group(1) else grouped

    out = _GROUP.sub(group, out)
    out = out.replace("$__interval", f"{interval_s}s")
    for name, value in sorted(variables.items(), key=lambda kv: -len(kv[0])):
        rendered_value = (
            ",".join(f"'{v}'" for v in value) if isinstance(value, list) else str(value)
        )
        out = out.replace(f"${{{name}:raw}}", str(value)).replace(f"${name}", rendered_value)
    if "$" in out.replace("$$", ""):
        raise ValueError(f"unexpanded macro or variable in: {out[:200]}")
    return out


def sql_targets() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, SQL) of every SQL panel and SQL variable."""
    found = []
    for name, body in DASHBOARDS.items():
        for panel in body["panels"]:
            for target in panel["targets"]:
                if "rawSql" in target:
                    found.append((name, panel["title"], target["rawSql"]))
        for variable in body["templating"]["list"]:
            if variable["type"] == "query":
                found.append((name, f"variable {variable['name']}", variable["query"]))
    return found


def rendered(body: dict[str, Any]) -> str:
    return json.dumps(body, indent=2, ensure_ascii=False) + "\n"


def export(directory: Path = DASHBOARD_DIR) -> list[Path]:
    """Write every dashboard as `<name>.json`; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, body in DASHBOARDS.items():
        path = directory / f"{name}.json"
        path.write_text(rendered(body))
        written.append(path)
    return written


def datasources(database: dict[str, str], prometheus_url: str) -> list[dict[str, Any]]:
    """Grafana data source bodies (the same uids as the provisioning files)."""
    return [
        {
            "name": "TimescaleDB", "uid": PG["uid"], "type": PG["type"], "access": "proxy",
            "url": database["host"], "user": database["user"], "isDefault": True,
            "jsonData": {"database": database["dbname"], "sslmode": "disable",
                         "postgresVersion": 1500,
                         "timescaledb": database.get("timescaledb") == "1"},
            "secureJsonData": {"password": database.get("password", "")},
        },
        {"name": "Prometheus", "uid": PROM["uid"], "type": PROM["type"], "access": "proxy",
         "url": prometheus_url},
    ]  # fmt: skip


def provision(
    grafana_url: str, token: str | None, database: dict[str, str] | None = None,
    prometheus_url: str | None = None,
) -> list[str]:  # fmt: skip
    """Create missing data sources and push every dashboard (grafana-client); what was done."""
    api = GrafanaApi.from_url(grafana_url, credential=token, timeout=30)
    done = []
    try:
        if database is not None and prometheus_url is not None:
            for source in datasources(database, prometheus_url):
                if _exists(functools.partial(api.datasource.get_datasource_by_uid, source["uid"])):
                    done.append(f"data source {source['name']} present")
                else:
                    api.datasource.create_datasource(source)
                    done.append(f"data source {source['name']} created")
        if not _exists(lambda: api.folder.get_folder("qjt")):
            api.folder.create_folder("Quantum Job Tracker", uid="qjt")
        for body in DASHBOARDS.values():
            answer = api.dashboard.update_dashboard(
                {"dashboard": {**body, "id": None}, "folderUid": "qjt", "overwrite": True,
                 "message": "qjt grafana provision"}
            )  # fmt: skip
            done.append(f"dashboard {body['title']} → {answer.get('url', '?')}")
    except GrafanaException as exc:
        raise GrafanaError(f"Grafana refused: {exc.status_code} {exc.message}") from None
    except requests.RequestException as exc:
        raise GrafanaError(f"Grafana at {grafana_url} is not reachable: {exc}") from None
    return done


def _exists(get: Callable[[], Any]) -> bool:
    try:
        get()
    except GrafanaClientError as exc:
        if exc.status_code == 404:
            return False
        raise
    return True


class GrafanaError(RuntimeError):
    """Grafana refused a request or could not be reached; the message says why."""
