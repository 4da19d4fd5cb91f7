"""Emulator throughput over real HTTP: status polls/s, submissions/s, job list latency.

The emulator runs as its own process (one uvicorn worker, so one core); the load comes
from this process with a few concurrent connections. Targets: ≥ 500 status polls/s.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
from qiskit.primitives.containers.sampler_pub import SamplerPub
from qiskit_ibm_runtime.fake_provider import FakeManilaV2
from qiskit_ibm_runtime.json import RuntimeEncoder

from bench.httpload import request_bytes, run_load
from qjt.demo import bell_circuit
from services.emulator.accounts import crn_for
from tests.conftest import EmulatorProcess

PREMIUM = crn_for("a1b2c3demo", "0002-premium", private=True)
CONCURRENCY = 8
POLL_SECONDS = 8.0
SUBMISSIONS = 300
HISTORY = 100_000
LIST_REQUESTS = 200


def token(url: str) -> str:
    response = httpx.post(
        f"{url}/iam/identity/token",
        data={
            "grant_type": "urn:ibm:params:oauth:grant-type:apikey",
            "apikey": "qjt-emulator-demo-key",
        },
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def bell_params() -> str:
    isa = bell_circuit(FakeManilaV2())
    return json.dumps(
        {
            "program_id": "sampler",
            "backend": "ibmq_manila",
            "params": {"pubs": [SamplerPub.coerce(isa, 100)], "version": 2},
        },
        cls=RuntimeEncoder,
    )


async def run(url: str, port: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token(url)}", "Service-CRN": PREMIUM}
    status = request_bytes("GET", "/api/v1/backends/ibm_kyiv/status", headers)
    polls = await run_load(port, status, connections=CONCURRENCY, seconds=POLL_SECONDS)
    submit = request_bytes(
        "POST",
        "/api/v1/jobs",
        {**headers, "Content-Type": "application/json"},
        bell_params().encode(),
    )
    submitted = await run_load(port, submit, connections=CONCURRENCY, total=SUBMISSIONS)
    async with httpx.AsyncClient(timeout=300) as client:
        added = await client.post(
            f"{url}/admin/history",
            json={"instance": PREMIUM, "backend": "ibm_kyiv", "count": HISTORY, "tags": ["bench"]},
        )
    added.raise_for_status()
    results: dict[str, Any] = {
        "status_polls_per_s": polls.per_second,
        "status_p99_ms": polls.percentile(0.99),
        "submissions_per_s": submitted.per_second,
        "jobs_stored": added.json()["total"],
    }
    for name, query in (
        ("list_newest_20", "limit=20"),
        ("list_by_backend", "limit=20&backend=ibm_kyiv"),
        ("list_by_tag_page_5", "limit=20&offset=80&tags=bench"),
    ):
        listing = await run_load(
            port,
            request_bytes("GET", f"/api/v1/jobs?{query}", headers),
            connections=1,
            total=LIST_REQUESTS,
        )
        results[name] = {"p50_ms": listing.percentile(0.5), "p99_ms": listing.percentile(0.99)}
    return results


def main() -> None:
    emulator = EmulatorProcess(speedup=60)
    try:
        results = asyncio.run(run(emulator.url, emulator.port))
    finally:
        emulator.stop()
    print("Emulator over HTTP (one uvicorn process; load from another, 8 connections)")
    print(
        f"  status polls/s       {results['status_polls_per_s']:,.0f}  (target ≥ 500), "
        f"p99 {results['status_p99_ms']:.1f} ms"
    )
    print(f"  job submissions/s    {results['submissions_per_s']:,.0f}")
    for key in ("list_newest_20", "list_by_backend", "list_by_tag_page_5"):
        figures = results[key]
        print(
            f"  jobs list, {results['jobs_stored']:,} stored, {key:<20} "
            f"p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms"
        )
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "emulator.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
