"""Every Grafana panel's SQL over 30 days of calibration history for every backend.

History: for every emulated backend with a calibration (configurations stored through the
poller's and recorder's code), 30 days of hourly snapshots drifting around its published
values as the emulator's do (a daily recalibration jump, an hourly random walk): every
qubit's T1, T2 and readout error, every 2-qubit gate's error, and the recorder's summary
row per snapshot; a status per backend every 5 minutes with the hourly rollup; four weeks
of queue history for eight backends. Rows go in with COPY (tens of millions of them).
Then each panel query, with Grafana's macros expanded for the whole 30 days, runs 5 times
on plain PostgreSQL (no TimescaleDB); the median and worst are reported.

Target: every panel under 200 ms.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from qiskit_ibm_runtime.models import QasmBackendConfiguration

from bench.fleet import store_events, store_history
from bench.queue_history import emulated_history
from qjt import grafana
from qjt.config import Settings
from qjt.contracts import Message
from qjt.db import create_database, drop_database, migrate, open_pool, with_database
from qjt.devstack import postgres_server_url
from services.emulator.devices import Device, load_devices
from services.poller.ibm import configuration_of
from services.recorder.handlers import FAULTY_READOUT
from services.recorder.store import APPEND_ONLY

SNAPSHOT_COLUMNS = APPEND_ONLY["calibration_snapshots"]

DAYS = 30
END = datetime(2026, 11, 20, tzinfo=UTC)
START = END - timedelta(days=DAYS)
STATUS_EVERY = timedelta(minutes=5)
RUNS = 5
VARIABLES: dict[str, str | list[str]] = {
    "backend": "ibm_kyiv", "qubit": [str(q) for q in range(8)], "metric": "t1_us"
}  # fmt: skip


def device_arrays(device: Device) -> dict[str, Any]:
    """A device's published calibration as arrays (qubit T1/T2/readout, 2-qubit gates)."""
    base = device.base_properties or {}
    values = [{p["name"]: float(p["value"]) for p in q} for q in base.get("qubits", [])]
    pairs = [(g["gate"], list(g["qubits"]),
              next((float(p["value"]) for p in g["parameters"] if p["name"] == "gate_error"), 0.0))
             for g in base.get("gates", []) if len(g["qubits"]) == 2]  # fmt: skip
    ones = [next((float(p["value"]) for p in g["parameters"] if p["name"] == "gate_error"), 0.0)
            for g in base.get("gates", []) if g["gate"] == "sx"]  # fmt: skip
    return {
        "t1": np.array([v.get("T1", 100.0) for v in values]),
        "t2": np.array([v.get("T2", 100.0) for v in values]),
        "readout": np.array([v.get("readout_error", 0.02) for v in values]),
        "pairs": pairs,
        "one": np.array(ones or [0.0003]),
    }


async def seed(database: str) -> dict[str, int]:
    """30 days of hourly snapshots for every device, drifting as the emulator's do."""
    devices = {n: d for n, d in load_devices(11).items() if d.props_file}
    configs: list[Message] = [
        configuration_of(n, QasmBackendConfiguration.from_dict(d.configuration))
        for n, d in devices.items()
    ]
    pool = open_pool(database, 2)
    await pool.open()
    await store_events(pool, configs)
    await pool.close()
    started = time.perf_counter()
    rng = np.random.default_rng(7)
    arrays = {n: device_arrays(d) for n, d in devices.items()}
    with psycopg.connect(database) as conn, conn.cursor() as cur:
        for day in range(DAYS):
            qubit_rows, gate_rows, snapshot_rows, status_rows = [], [], [], []
            for name, a in arrays.items():
                n = len(a["t1"])
                jump = rng.normal(0, 0.15, size=(n, 3))
                pair_jump = rng.normal(0, 0.15, size=len(a["pairs"]))
                for hour in range(24):
                    moment = START + timedelta(days=day, hours=hour)
                    walk = jump + rng.normal(0, 0.04, size=(n, 3)) * np.sqrt(hour + 1)
                    t1 = a["t1"] * np.exp(walk[:, 0])
                    t2 = np.minimum(a["t2"] * np.exp(walk[:, 1]), 2 * t1)
                    readout = np.minimum(a["readout"] * np.exp(walk[:, 2]), 0.5)
                    errors = [e * float(np.exp(j)) for (_, _, e), j in
                              zip(a["pairs"], pair_jump, strict=True)]  # fmt: skip
                    qubit_rows += [(name, moment, q, float(t1[q]), float(t2[q]),
                                    float(readout[q])) for q in range(n)]  # fmt: skip
                    gate_rows += [
                        (name, moment, pair[0], pair[1], min(e, 1.0))
                        for pair, e in zip(a["pairs"], errors, strict=True)
                    ]
                    # The recorder's summary row for this snapshot (same definitions).
                    snapshot_rows.append((
                        name, moment, n, float(np.median(t1)), float(np.median(t2)),
                        float(np.median(readout)), float(np.median(a["one"])),
                        float(np.median(errors)) if errors else None,
                        int((readout >= FAULTY_READOUT).sum()),
                    ))  # fmt: skip
                    for step in range(int(timedelta(hours=1) / STATUS_EVERY)):
                        status_rows.append((name, moment + step * STATUS_EVERY, True,
                                            int((hour * 12 + step) % 40)))  # fmt: skip
            await_copy(
                cur,
                "qubit_calibration",
                "backend, calibrated_at, qubit, t1_us, t2_us, readout_error",
                qubit_rows,
            )
            await_copy(
                cur, "gate_calibration", "backend, calibrated_at, gate, qubits, error", gate_rows
            )
            await_copy(cur, "calibration_snapshots", ", ".join(SNAPSHOT_COLUMNS), snapshot_rows)
            await_copy(cur, "backend_status", "backend, observed_at, operational, pending_jobs",
                       status_rows)  # fmt: skip
            conn.commit()
            if day % 5 == 0:
                print(f"  seeded {day + 1} of {DAYS} days ({time.perf_counter() - started:.0f} s)",
                      flush=True)  # fmt: skip
        cur.execute(
            """INSERT INTO backend_status_hourly
               SELECT backend, time_bucket(INTERVAL '1 hour', observed_at), max(pending_jobs),
                      sum(pending_jobs), count(*)
               FROM backend_status GROUP BY 1, 2 ON CONFLICT DO NOTHING"""
        )
        conn.commit()
    jobs, _statuses = emulated_history(backends=8, days=28, jobs_per_hour=3, start=START)
    pool = open_pool(database, 2)
    await pool.open()
    await store_history(pool, jobs, [])  # the statuses above stand for the poller's
    await pool.close()
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        counts = {
            table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]
            for table in ("qubit_calibration", "gate_calibration", "calibration_snapshots",
                          "backend_status", "backend_status_hourly", "jobs")
        }  # fmt: skip
    counts["backends"] = len(devices)
    counts["seed_seconds"] = int(time.perf_counter() - started)
    return counts


def await_copy(
    cur: psycopg.Cursor[Any], table: str, columns: str, rows: list[tuple[Any, ...]]
) -> None:
    with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def time_panels(database: str) -> list[dict[str, Any]]:
    results = []
    with psycopg.connect(database, autocommit=True) as conn:
        for dashboard, title, sql in grafana.sql_targets():
            query = grafana.expand(sql, START, END, VARIABLES, interval_s=3600)
            took, rows = [], 0
            for _ in range(RUNS):
                started = time.perf_counter()
                rows = len(conn.execute(query).fetchall())
                took.append((time.perf_counter() - started) * 1000)
            results.append({"dashboard": dashboard, "panel": title, "rows": rows,
                            "median_ms": statistics.median(took), "max_ms": max(took)})  # fmt: skip
    return results


def main() -> None:
    print(f"Grafana panels over {DAYS} days of calibration history, every backend "
          "(plain PostgreSQL)", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(database_url=os.environ.get("QJT_DATABASE_URL") or None)
        server, _origin, _keep = postgres_server_url(settings, Path(tmp) / "pg")
        database = with_database(server, f"qjt_bench_panels_{uuid.uuid4().hex[:6]}")
        create_database(database)
        try:
            migrate(database)
            counts = asyncio.run(seed(database))
            print("  rows: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()), flush=True)
            results = time_panels(database)
        finally:
            drop_database(database)
    for r in results:
        verdict = "ok" if r["max_ms"] < 200 else "OVER 200 ms"
        print(f"  {r['dashboard']:>17} · {r['panel'][:58]:<58} {r['rows']:>7,} rows  "
              f"median {r['median_ms']:6.1f} ms, max {r['max_ms']:6.1f} ms  {verdict}")  # fmt: skip
    worst = max(results, key=lambda r: r["max_ms"])
    print(f"  slowest: {worst['panel']} at {worst['max_ms']:.1f} ms (target < 200 ms)")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "panels.json").write_text(json.dumps({"rows": counts, "panels": results}, indent=2))


if __name__ == "__main__":
    main()
