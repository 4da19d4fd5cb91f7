"""Grafana dashboards without a Grafana server: every panel's SQL runs on PostgreSQL over
seeded data with Grafana's macros and variables expanded; the JSON is what provisioning
loads; the PromQL parses and names metrics the services export; `qjt grafana provision`
talks Grafana's HTTP API (a local stand-in, over real HTTP).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import uvicorn
import yaml
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bench.fleet import fleet, store_fleet, store_history
from bench.queue_history import emulated_history
from qjt import grafana
from qjt.db import migrate, open_pool
from qjt.devstack import free_port
from services.emulator.devices import load_devices
from tests.unit.test_prometheus_rules import exported_metrics

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ["ibm_algiers", "ibm_hanoi", "ibmq_kolkata"]
START = datetime(2026, 11, 18, tzinfo=UTC)
RANGE = (datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 21, tzinfo=UTC))
VARIABLES: dict[str, str | list[str]] = {
    "backend": "ibm_hanoi", "qubit": ["0", "1", "5"], "metric": "t1_us"
}  # fmt: skip


@pytest.fixture(scope="module")
def seeded(postgres_server: str) -> Iterator[str]:
    """Two days of hourly calibrations and statuses for three backends, and queue history."""
    from qjt.db import create_database, drop_database, with_database

    database = with_database(postgres_server, f"qjt_test_dash_{int(time.time() * 1000)}")
    create_database(database)
    migrate(database)
    devices = load_devices(11)

    async def seed() -> None:
        pool = open_pool(database, 2)
        await pool.open()
        for hour in range(48):
            moment = START + timedelta(hours=hour)
            backends = fleet(11, moment, names=BACKENDS, devices=devices)
            await store_fleet(pool, backends, moment, pending={"ibm_hanoi": hour % 9})
        jobs, statuses = emulated_history(names=BACKENDS, days=2, jobs_per_hour=3)
        await store_history(pool, jobs, statuses)
        await pool.close()

    asyncio.run(seed())
    try:
        yield database
    finally:
        drop_database(database)


@pytest.mark.parametrize(
    ("dashboard", "title", "sql"), grafana.sql_targets(), ids=lambda v: str(v)[:40]
)
def test_every_panel_query_returns_rows(seeded: str, dashboard: str, title: str, sql: str) -> None:
    query = grafana.expand(sql, *RANGE, VARIABLES)
    with psycopg.connect(seeded) as conn:
        rows = conn.execute(query).fetchall()
    assert rows, f"{dashboard} / {title} returned no rows"
    if not title.startswith("variable") and "time_series" in json.dumps(_panel(title)):
        assert {"time"} <= set(_columns(seeded, query)), f"{title} has no time column"


def _panel(title: str) -> dict[str, Any]:
    for body in grafana.DASHBOARDS.values():
        for panel in body["panels"]:
            if panel["title"] == title:
                return dict(panel)
    raise KeyError(title)


def _columns(database: str, query: str) -> list[str]:
    with psycopg.connect(database) as conn:
        cursor = conn.execute(query)
        return [c.name for c in cursor.description or []]


def test_the_qubit_filter_and_metric_change_the_answer(seeded: str) -> None:
    sql = next(s for _, t, s in grafana.sql_targets() if t == "$metric per qubit over time")

    def run(**overrides: str | list[str]) -> list[tuple[Any, ...]]:
        query = grafana.expand(sql, *RANGE, {**VARIABLES, **overrides})
        with psycopg.connect(seeded) as conn:
            return conn.execute(query).fetchall()

    one = run(qubit=["3"])
    assert {r[1] for r in one} == {"q3"} and len(one) == 48
    assert run(metric="t2_us") != run(metric="t1_us")
    assert {r[1] for r in run(backend="ibm_algiers", qubit=["0", "1"])} == {"q0", "q1"}


def test_exported_files_are_the_dashboards_and_provisioning_loads_them() -> None:
    directory = ROOT / "deploy/grafana/dashboards"
    files = {p.stem: p.read_text() for p in directory.glob("*.json")}
    assert files == {name: grafana.rendered(body) for name, body in grafana.DASHBOARDS.items()}, (
        "dashboards changed: run `qjt grafana export`"
    )
    sources = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/datasources.yaml").read_text()
    )
    uids = {s["uid"]: s["type"] for s in sources["datasources"]}
    for body in grafana.DASHBOARDS.values():
        ids = [p["id"] for p in body["panels"]]
        assert len(ids) == len(set(ids)), f"{body['title']}: panel ids repeat"
        for panel in body["panels"]:
            assert uids[panel["datasource"]["uid"]] == panel["datasource"]["type"]
            assert set(panel["gridPos"]) == {"x", "y", "w", "h"}
            assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        titles = [b["title"] for b in grafana.DASHBOARDS.values()]
        assert len(titles) == len(set(titles))


def test_operations_promql_parses_and_uses_exported_metrics(tmp_path: Path) -> None:
    exprs = [t["expr"] for p in grafana.OPERATIONS["panels"] for t in p["targets"]]
    rules = {"groups": [{"name": "panels", "rules": [
        {"record": f"qjt:panel_{i}", "expr": e} for i, e in enumerate(exprs)]}]}  # fmt: skip
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump(rules))
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make tools` installs Debian's prometheus package"
    run = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True,
                         check=False)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    used = {m for e in exprs for m in re.findall(r"\bqjt_[a-z_]+", e)}
    exported = exported_metrics() | set(REGISTRY._names_to_collectors)
    assert used <= exported, sorted(used - exported)


class FakeGrafana:
    """Enough of Grafana's HTTP API for provisioning, recording what it was sent."""

    def __init__(self) -> None:
        self.port = free_port()
        self.sources: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.folders: set[str] = set()
        self.auth: list[str] = []

    async def handle(self, request: Request) -> JSONResponse:
        self.auth.append(request.headers.get("authorization", ""))
        path, method = request.url.path, request.method
        if path.startswith("/api/datasources/uid/"):
            uid = path.rsplit("/", 1)[1]
            found = self.sources.get(uid)
            return JSONResponse(found or {"message": "not found"}, 200 if found else 404)
        if path == "/api/datasources" and method == "POST":
            body = await request.json()
            self.sources[body["uid"]] = body
            return JSONResponse({"id": len(self.sources)})
        if path == "/api/folders/qjt":
            return JSONResponse({}, 200 if "qjt" in self.folders else 404)
        if path == "/api/folders":
            self.folders.add((await request.json())["uid"])
            return JSONResponse({"uid": "qjt"})
        if path == "/api/dashboards/db":
            body = await request.json()
            if not body["dashboard"].get("panels"):
                return JSONResponse({"message": "Dashboard has no panels"}, 400)
            self.dashboards[body["dashboard"]["uid"]] = body
            return JSONResponse({"url": f"/d/{body['dashboard']['uid']}", "status": "success"})
        return JSONResponse({"message": "no such route"}, 404)

    def start(self) -> Callable[[], None]:
        app = Starlette(routes=[Route("/{p:path}", self.handle, methods=["GET", "POST"])])
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                               log_level="warning"))  # fmt: skip
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)

        def stop() -> None:
            server.should_exit = True
            thread.join(10)

        return stop


def test_qjt_grafana_provision_pushes_data_sources_and_dashboards() -> None:
    fake = FakeGrafana()
    stop = fake.start()
    try:
        env = {"QJT_GRAFANA_URL": f"http://127.0.0.1:{fake.port}",
               "QJT_GRAFANA_TOKEN": "glsa_token_for_test", "QJT_GRAFANA_DB_PASSWORD": "pw",
               "PATH": "/usr/bin:/bin"}  # fmt: skip
        qjt = str(ROOT / ".venv/bin/qjt")
        run = subprocess.run([qjt, "grafana", "provision", "--database-host", "db:5432"],
                             env=env, capture_output=True, text=True, check=False)  # fmt: skip
        assert run.returncode == 0, run.stdout + run.stderr
        assert set(fake.sources) == {"qjt-postgres", "qjt-prometheus"}
        assert fake.sources["qjt-postgres"]["secureJsonData"]["password"] == "pw"
        assert set(fake.dashboards) == {b["uid"] for b in grafana.DASHBOARDS.values()}
        assert all(d["folderUid"] == "qjt" and d["overwrite"] for d in fake.dashboards.values())
        assert set(fake.auth) == {"Bearer glsa_token_for_test"}
        assert "glsa_token_for_test" not in run.stdout + run.stderr
        again = subprocess.run([qjt, "grafana", "provision"], env=env, capture_output=True,
                               text=True, check=False)  # fmt: skip
        assert again.returncode == 0 and "dashboard" in again.stdout
        nowhere = subprocess.run([qjt, "grafana", "provision"], env={"PATH": "/usr/bin:/bin"},
                                 capture_output=True, text=True, check=False)  # fmt: skip
        assert nowhere.returncode == 2 and "QJT_GRAFANA_URL" in nowhere.stdout
    finally:
        stop()
