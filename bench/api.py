"""API gateway latency over real HTTP, NATS and PostgreSQL.

1. Submit: `POST /v1/jobs` (Sampler, Bell circuit, a named backend: every check runs, the
   ledger row is written and two messages are stored by JetStream) at increasing request
   rates, open loop (each request's latency counts from its scheduled start, so a slow
   answer delays nothing it should not). Target: p99 < 20 ms at 200 requests/s.
2. List: `GET /v1/jobs` with 1,000,000 jobs in the table (100,000 of them the caller's):
   first page, deep keyset pages, and filtered pages. Target: p99 < 50 ms.

The API runs as its own process (one uvicorn worker); nothing consumes the commands, so
the submitter's work is not measured here.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.httpload import LoadResult, read_response, request_bytes
from qjt.config import Settings
from qjt.db import create_database, drop_database, migrate, with_database
from qjt.demo import BELL_QASM as BELL
from qjt.devstack import NatsServer, free_port, postgres_server_url, stop_process

API_KEY = "qjt_bench_key_0123456789"
USER = "bench-user"
INSTANCE = "crn:v1:bluemix:public:quantum-computing:us-east:a/bench:0001::"
BACKEND = "ibm_kyiv"
RATES = (50, 100, 200, 300)
SECONDS_PER_RATE = 10.0
TOTAL_JOBS = 1_000_000
USERS = 10
LIST_REQUESTS = 300


def seed_account(database: str) -> None:
    """One user with an API key, an instance offering one operational backend."""
    now = datetime.now(UTC)
    with psycopg.connect(database) as conn:
        conn.execute("INSERT INTO users (id, role) VALUES (%s, 'user')", (USER,))
        conn.execute(
            "INSERT INTO api_keys (user_id, key_hash, key_prefix) VALUES (%s, %s, 'qjt_be')",
            (USER, hashlib.sha256(API_KEY.encode()).hexdigest()),
        )
        credential = conn.execute(
            "INSERT INTO ibm_credentials (user_id, channel, token_ciphertext) "
            "VALUES (%s, 'ibm_quantum_platform', 'x') RETURNING id",
            (USER,),
        ).fetchone()
        assert credential is not None
        conn.execute(
            "INSERT INTO ibm_instances (credential_id, crn) VALUES (%s, %s)",
            (credential[0], INSTANCE),
        )
        conn.execute("INSERT INTO instance_backends VALUES (%s, %s, %s)", (INSTANCE, now, BACKEND))
        conn.execute(
            "INSERT INTO backend_status VALUES (%s, %s, true, 3, 'active')", (BACKEND, now)
        )
        conn.execute(
            "INSERT INTO backend_config (backend, config_hash, num_qubits, basis_gates, "
            "max_shots, observed_at) VALUES (%s, 'h', 127, '{ecr,rz,sx,x}', 100000, %s)",
            (BACKEND, now),
        )


def seed_jobs(database: str) -> None:
    """A million jobs over 90 days: ten users, five backends, every status, some tags."""
    with psycopg.connect(database) as conn:
        conn.execute(
            """INSERT INTO jobs (id, user_id, ibm_job_id, backend, instance, primitive, status,
                 status_rank, shots, num_circuits, tags, priority, created_at, updated_at)
               SELECT 'job-' || n,
                      CASE WHEN n %% %(users)s = 0 THEN %(user)s ELSE 'other-' || (n %% %(users)s) END,
                      'ibm-' || n,
                      (ARRAY['ibm_kyiv','ibm_brisbane','ibm_sherbrooke','ibm_torino','ibm_fez'])[1 + abs(hashtext('b' || n)) %% 5],
                      %(instance)s, 'sampler',
                      (ARRAY['QUEUED','RUNNING','DONE','DONE','DONE','ERROR','CANCELLED'])[1 + abs(hashtext('s' || n)) %% 7],
                      (ARRAY[3,4,5,5,5,5,5])[1 + abs(hashtext('s' || n)) %% 7],
                      1000, 1,
                      ARRAY['team-' || abs(hashtext('t' || n)) %% 20, 'exp-' || abs(hashtext('e' || n)) %% 1000],
                      1 + abs(hashtext('p' || n)) %% 10,
                      now() - make_interval(secs => (n * 7.77) %% (90 * 86400)),
                      now()
               FROM generate_series(1, %(total)s) AS n""",  # noqa: E501
            {"users": USERS, "user": USER, "instance": INSTANCE, "total": TOTAL_JOBS},
        )
        conn.execute("ANALYZE jobs")


async def open_loop(port: int, request: bytes, rate: float, seconds: float) -> LoadResult:
    """Send `request` at `rate` per second; latency counts from each scheduled start."""
    connections: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(32):
        connections.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    latencies: list[float] = []
    failures: list[int] = []
    begin = time.perf_counter()

    async def one(scheduled: float) -> None:
        reader, writer = await connections.get()
        try:
            writer.write(request)
            status = await read_response(reader)
            if status >= 300:
                failures.append(status)
            latencies.append((time.perf_counter() - scheduled) * 1000)
        finally:
            connections.put_nowait((reader, writer))

    tasks = []
    count = int(rate * seconds)
    for i in range(count):
        scheduled = begin + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - begin
    while not connections.empty():
        _reader, writer = connections.get_nowait()
        writer.close()
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, e.g. HTTP {failures[0]}")
    return LoadResult(len(latencies), elapsed, latencies)


async def list_latency(port: int, paths: list[str]) -> LoadResult:
    """One connection, requests one after another (the latency of a single client)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    latencies = []
    begin = time.perf_counter()
    for path in paths:
        start = time.perf_counter()
        writer.write(request_bytes("GET", path, {"Authorization": f"Bearer {API_KEY}"}))
        status = await read_response(reader)
        if status != 200:
            raise RuntimeError(f"{path}: HTTP {status}")
        latencies.append((time.perf_counter() - start) * 1000)
    writer.close()
    return LoadResult(len(paths), time.perf_counter() - begin, latencies)


def keyset_pages(base: str, url: str, pages: int) -> list[str]:
    """Paths of consecutive pages (cursors fetched once, beforehand)."""
    paths = [base]
    headers = {"Authorization": f"Bearer {API_KEY}"}
    for _ in range(pages - 1):
        cursor = httpx.get(url + paths[-1], headers=headers, timeout=30).json()["next_cursor"]
        paths.append(f"{base}&cursor={cursor}")
    return paths


def report(name: str, result: LoadResult, target: str = "") -> dict[str, Any]:
    line = {
        "benchmark": name,
        "requests": result.requests,
        "p50_ms": round(result.percentile(0.5), 2),
        "p99_ms": round(result.percentile(0.99), 2),
        "target": target,
    }
    print(json.dumps(line), flush=True)
    return line


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        settings = Settings(database_url=os.environ.get("QJT_DATABASE_URL") or None)
        server, _origin, _keep = postgres_server_url(settings, state / "pg")
        database = with_database(server, f"qjt_bench_api_{uuid.uuid4().hex[:6]}")
        create_database(database)
        nats = NatsServer(state / "nats").start()
        port = free_port()
        api: subprocess.Popen[bytes] | None = None
        try:
            migrate(database)
            seed_account(database)
            print("seeding 1,000,000 jobs…", flush=True)
            seed_jobs(database)
            env = {
                **os.environ,
                "QJT_DATABASE_URL": database,
                "QJT_NATS_URL": nats.url,
                "QJT_HTTP_PORT": str(port),
                "QJT_API_RATE_LIMIT": "1000000/minute",
                "QJT_LOG_LEVEL": "WARNING",
            }
            api = subprocess.Popen([sys.executable, "-m", "services.api"], env=env)
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.2)
            run(port, url)
        finally:
            if api is not None:
                stop_process(api, 20)
            nats.stop()
            drop_database(database)


def run(port: int, url: str) -> None:
    body = json.dumps(
        {"primitive": "sampler", "circuits": [BELL], "shots": 1000, "backend": BACKEND}
    ).encode()
    submit = request_bytes(
        "POST",
        "/v1/jobs",
        {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
        body,
    )
    asyncio.run(open_loop(port, submit, 50, 2))  # warm-up
    for rate in RATES:
        result = asyncio.run(open_loop(port, submit, rate, SECONDS_PER_RATE))
        report(f"api submit at {rate}/s", result, "p99 < 20 ms at 200/s" if rate == 200 else "")

    first = ["/v1/jobs?limit=50"] * LIST_REQUESTS
    report("api list, first page (1M jobs)", asyncio.run(list_latency(port, first)), "p99 < 50 ms")
    deep = keyset_pages("/v1/jobs?limit=50", url, 100) * 3
    report("api list, keyset pages 1-100", asyncio.run(list_latency(port, deep)), "p99 < 50 ms")
    filtered = [
        "/v1/jobs?limit=50&status=Completed",
        "/v1/jobs?limit=50&backend=ibm_nowhere",  # matches nothing: the worst case
        "/v1/jobs?limit=50&backend=ibm_torino",
        "/v1/jobs?limit=50&tag=team-0",
        "/v1/jobs?limit=50&priority=3&status=Failed",
        "/v1/jobs?limit=50&created_from=2026-01-01T00:00:00Z&created_to=2026-12-31T00:00:00Z",
    ] * (LIST_REQUESTS // 5)
    report("api list, filtered (1M jobs)", asyncio.run(list_latency(port, filtered)), "p99 < 50 ms")


if __name__ == "__main__":
    main()
