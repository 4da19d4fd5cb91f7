"""The API gateway and submitter on the whole stack: HTTP in, IBM (the emulator) out.

Everything is real: the API and every worker run as processes on the wheel's NATS,
PostgreSQL and the emulator, and jobs go through the unmodified qiskit-ibm-runtime client.
Two users register with the emulator's two demo tokens; one of them later gets the ops role.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from qjt.demo import BELL_NO_MEASURE_QASM as BELL_NO_MEASURE
from qjt.demo import BELL_QASM as BELL
from qjt.devstack import stop_process
from qjt.ibm import runtime_service
from services.emulator.accounts import crn_for
from tests.e2e.conftest import TOKEN_A, TOKEN_B, Gateway
from tests.helpers.fake_slack import FakeSlack
from tests.helpers.stack import wait_until

pytestmark = pytest.mark.e2e

OPEN = crn_for("a1b2c3demo", "0001-open", private=False)
ZZ = [[{"pauli": "ZZ", "coefficient": 1.0}]]
SMALL_BACKEND = "ibmq_manila"  # 5 qubits, in both demo accounts


# -- jobs through HTTP ------------------------------------------------------------------


async def test_sampler_bell_job_completes_with_counts_timeline_and_live_events(
    gateway: Gateway,
) -> None:
    a = gateway.a
    seen: list[dict[str, Any]] = []
    connected = asyncio.Event()

    async def listen() -> None:
        headers = {"Authorization": f"Bearer {a.api_key}"}
        async with (
            httpx.AsyncClient(base_url=gateway.stack.api_url, timeout=None) as client,
            client.stream("GET", "/v1/jobs/events", headers=headers) as stream,
        ):
            assert stream.headers["content-type"].startswith("text/event-stream")
            async for line in stream.aiter_lines():
                connected.set()
                if line.startswith("data: "):
                    seen.append(json.loads(line.removeprefix("data: ")))

    listener = asyncio.create_task(listen())
    await asyncio.wait_for(connected.wait(), 10)
    backend = await asyncio.to_thread(a.quickest_backend)
    job_id = await asyncio.to_thread(
        a.submit,
        primitive="sampler",
        circuits=[BELL],
        shots=2000,
        backend=backend,
        tags=["bell", "e2e"],
        priority=7,
    )
    job = await asyncio.to_thread(a.wait_status, job_id, "Completed")
    await asyncio.sleep(1)
    listener.cancel()

    outcome = job["result"]["sampler"][0]
    assert outcome["shots"] == 2000
    # A Bell state on a noisy device: 00 and 11 dominate.
    ranked = sorted(outcome["probabilities"], key=outcome["probabilities"].get, reverse=True)
    assert set(ranked[:2]) == {"00", "11"}
    assert outcome["probabilities"]["00"] + outcome["probabilities"]["11"] > 0.6
    assert abs(sum(outcome["probabilities"].values()) - 1) < 1e-9
    assert job["backend"] == backend and job["ibm_job_id"]
    assert job["tags"] == ["bell", "e2e"] and job["priority"] == 7
    statuses = [entry["status"] for entry in job["timeline"]]
    assert statuses[0] == "Queued" and statuses[-1] == "Completed" and "Running" in statuses
    assert job["queued_at"] <= job["running_at"] <= job["finished_at"]
    assert job["quantum_seconds"] and job["estimated_usage_seconds"]

    # IBM's job carries the seed's tags.
    service = runtime_service(TOKEN_A, instance=job["instance"], ibm_url=gateway.emulator.url)
    assert {f"user:{a.user_id}", "priority:7", "bell"} <= set(service.job(job["ibm_job_id"]).tags)

    # The event stream told the client about its job without polling.
    kinds = {e["type"] for e in seen if e.get("job_id") == job_id}
    assert {"job.accepted", "job.submitted", "job.result"} <= kinds
    assert all(e["user_id"] == a.user_id for e in seen)


def test_estimator_zz_on_a_bell_state_is_near_one(gateway: Gateway) -> None:
    job_id = gateway.a.submit(
        primitive="estimator",
        circuits=[BELL_NO_MEASURE],
        observables=ZZ,
        backend=gateway.a.quickest_backend(),
    )
    job = gateway.a.wait_status(job_id, "Completed")
    (value,) = job["result"]["estimator"]
    assert 0.7 < value["expectation_value"] <= 1.05  # ideal 1; the device's noise lowers it
    assert value["standard_error"] is not None


def test_local_aer_job_runs_without_ibm(gateway: Gateway) -> None:
    job_id = gateway.a.submit(primitive="aer", circuits=[BELL, BELL], shots=300)
    job = gateway.a.wait_status(job_id, "Completed", timeout_s=90)
    assert job["backend"] == "aer_simulator" and job["instance"] is None
    for outcome in job["result"]["sampler"]:
        assert set(outcome["counts"]) <= {"00", "11"} and outcome["shots"] == 300
    estimate = gateway.a.submit(primitive="aer", circuits=[BELL_NO_MEASURE], observables=ZZ)
    values = gateway.a.wait_status(estimate, "Completed")["result"]["estimator"]
    assert values[0]["expectation_value"] == pytest.approx(1.0)


def test_cancelling_a_queued_job_cancels_it_on_ibm(gateway: Gateway) -> None:
    a = gateway.a
    backend = a.quickest_backend()
    # The emulator starts nothing on this backend for now, so the job stays queued.
    gateway.emulator.set_faults(hold_backends=[backend])
    try:
        job_id = a.submit(primitive="sampler", circuits=[BELL], backend=backend)
        queued = wait_until(
            lambda: (j := a.job(job_id))["ibm_status"] == "QUEUED" and j, 60, "IBM queueing it"
        )
        assert queued["status"] == "Queued" and queued["ibm_job_id"]
        answer = a.http.post(f"/v1/jobs/{job_id}/cancel")
        assert answer.status_code == 202, answer.text
        job = a.wait_status(job_id, "Cancelled", timeout_s=60)
    finally:
        gateway.emulator.set_faults()
    service = runtime_service(TOKEN_A, instance=job["instance"], ibm_url=gateway.emulator.url)
    assert service.job(job["ibm_job_id"]).status() == "CANCELLED"
    again = a.http.post(f"/v1/jobs/{job_id}/cancel")
    assert again.status_code == 409 and "already Cancelled" in again.json()["error"]["message"]


def fully_scored(a: Any, circuit: str, preference: str) -> list[dict[str, Any]]:
    """The recommendations for `circuit` once every eligible backend has an ESP."""

    def ask() -> list[dict[str, Any]] | None:
        answer = a.http.post(
            "/v1/recommendations",
            json={"circuit": circuit, "preference": preference, "top": 20},
        )
        assert answer.status_code == 200, answer.text
        ranked = answer.json()
        return ranked if all(r["estimated_success_probability"] for r in ranked) else None

    ranked: list[dict[str, Any]] = wait_until(ask, 60, "every backend scored")
    return ranked


def test_auto_backend_takes_the_recommenders_best(gateway: Gateway) -> None:
    a = gateway.a
    before = fully_scored(a, BELL, "best_quality")
    top = before[0]
    assert top["layout"] and len(top["layout"]) == 2
    assert set(top["error_budget"]) == {"gates", "readout", "decoherence"}
    assert any("estimated success probability" in why for why in top["reasons"])
    esps = [r["estimated_success_probability"] for r in before]
    assert esps == sorted(esps, reverse=True)  # best quality: by ESP alone
    answer = a.http.post(
        "/v1/jobs",
        json={"primitive": "sampler", "circuits": [BELL], "backend": "auto",
              "preference": "best_quality"},
    )  # fmt: skip
    assert answer.status_code == 202, answer.text
    # A new calibration snapshot may land between the calls (one per emulated hour).
    after = fully_scored(a, BELL, "best_quality")
    assert answer.json()["backend"] in {top["backend"], after[0]["backend"]}
    seed = a.http.get("/v1/recommendations", params={"num_qubits": 2, "strategy": "seed"})
    assert seed.status_code == 200 and seed.json()[0]["estimated_success_probability"] is None


def test_recommendations_and_predictions_refuse_bad_input(gateway: Gateway) -> None:
    a = gateway.a
    bad = a.http.post(
        "/v1/recommendations", json={"circuit": "OPENQASM 2.0;\nqreg q[2];\nhx q[0];"}
    )
    assert bad.status_code == 422 and "line 3" in bad.json()["error"]["message"]
    unknown = a.http.get("/v1/backends/ibm_nowhere/prediction")
    assert unknown.status_code == 404
    backend = a.http.get("/v1/backends").json()[0]["name"]
    prediction = a.http.get(f"/v1/backends/{backend}/prediction", params={"shots": 1000})
    assert prediction.status_code == 200, prediction.text
    body = prediction.json()
    assert body["backend"] == backend and body["pending_jobs"] is not None
    assert body["model"] in ("learned", "seed")
    if body["model"] == "seed":  # this run's history is short: the answer says so
        assert "too little history" in body["note"]
    zero = a.http.get(f"/v1/backends/{backend}/prediction", params={"num_circuits": 0})
    assert zero.status_code == 422


def test_filters_keyset_pages_and_exports_match_the_list(gateway: Gateway) -> None:
    a = gateway.a
    run = uuid.uuid4().hex[:8]
    ids = [
        a.submit(
            primitive="aer", circuits=[BELL], shots=50, tags=[run, f"n{i % 2}"], priority=1 + i % 3
        )
        for i in range(7)
    ]
    for job_id in ids:
        a.wait_status(job_id, "Completed", timeout_s=90)

    pages: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"tag": run, "limit": 3, **({"cursor": cursor} if cursor else {})}
        page = a.http.get("/v1/jobs", params=params).json()
        pages += [j["id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(pages) == sorted(ids) and len(pages) == len(set(pages))

    listed = a.http.get("/v1/jobs", params={"tag": [run, "n1"], "limit": 100}).json()["jobs"]
    assert sorted(j["id"] for j in listed) == sorted(ids[1::2])
    by_priority = a.http.get("/v1/jobs", params={"tag": run, "priority": 2}).json()["jobs"]
    assert {j["priority"] for j in by_priority} == {2} and len(by_priority) == 2
    completed = a.http.get("/v1/jobs", params={"tag": run, "status": "Completed"}).json()["jobs"]
    assert len(completed) == 7
    assert a.http.get("/v1/jobs", params={"tag": run, "status": "Failed"}).json()["jobs"] == []
    on_aer = a.http.get("/v1/jobs", params={"tag": run, "backend": "aer_simulator"}).json()
    assert len(on_aer["jobs"]) == 7
    newest = listed[0]["created_at"]
    before = a.http.get("/v1/jobs", params={"tag": [run, "n1"], "created_to": newest}).json()
    assert [j["id"] for j in before["jobs"]] == [j["id"] for j in listed[1:]]

    as_json = a.http.get("/v1/jobs/export", params={"tag": run, "format": "json"})
    assert as_json.status_code == 200 and as_json.headers["x-export-truncated"] == "false"
    full = a.http.get("/v1/jobs", params={"tag": run, "limit": 100}).json()["jobs"]
    assert as_json.json() == full
    as_csv = a.http.get("/v1/jobs/export", params={"tag": run, "format": "csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [r["id"] for r in rows] == [j["id"] for j in full]
    assert [r["status"] for r in rows] == ["Completed"] * 7
    assert all(set(r["tags"].split(";")) in ({run, "n0"}, {run, "n1"}) for r in rows)


def test_idempotency_key_returns_the_same_job(gateway: Gateway) -> None:
    a = gateway.a
    key = {"Idempotency-Key": uuid.uuid4().hex}
    body = {"primitive": "aer", "circuits": [BELL], "shots": 10}
    first = a.http.post("/v1/jobs", json=body, headers=key)
    second = a.http.post("/v1/jobs", json=body, headers=key)
    assert first.status_code == second.status_code == 202
    assert first.json()["job_id"] == second.json()["job_id"]
    other = a.http.post("/v1/jobs", json={**body, "shots": 11}, headers=key)
    assert other.status_code == 409 and "different request" in other.json()["error"]["message"]
    count = gateway.stack.rows(
        "SELECT count(*) FROM submissions WHERE idempotency_key = %s", key["Idempotency-Key"]
    )
    assert count == [(1,)]


def test_status_of_many_jobs_in_one_call(gateway: Gateway) -> None:
    a = gateway.a
    job_id = a.submit(primitive="aer", circuits=[BELL], shots=10)
    ids = [job_id, *[f"missing-{i}" for i in range(998)]]
    answer = a.http.post("/v1/jobs/status", json={"job_ids": ids})
    assert answer.status_code == 200
    assert set(answer.json()["statuses"]) == {job_id}
    assert len(answer.json()["not_found"]) == 998
    too_many = a.http.post("/v1/jobs/status", json={"job_ids": [str(i) for i in range(1001)]})
    assert too_many.status_code == 422 and "job_ids" in too_many.json()["error"]["message"]


# -- tenancy ------------------------------------------------------------------------------


def test_another_users_job_is_invisible_until_ops(gateway: Gateway) -> None:
    a, b = gateway.a, gateway.b
    tag = uuid.uuid4().hex[:8]
    job_id = a.submit(primitive="aer", circuits=[BELL], shots=20, tags=[tag])
    a.wait_status(job_id, "Completed")

    assert b.http.get(f"/v1/jobs/{job_id}").status_code == 404
    assert b.http.post(f"/v1/jobs/{job_id}/cancel").status_code == 404
    assert b.http.get("/v1/jobs", params={"tag": tag}).json()["jobs"] == []
    assert b.http.get("/v1/jobs/export", params={"tag": tag, "format": "json"}).json() == []
    assert b.http.post("/v1/jobs/status", json={"job_ids": [job_id]}).json()["not_found"] == [
        job_id
    ]
    other = b.http.get("/v1/jobs", params={"user": a.user_id})
    assert other.status_code == 403

    promoted = subprocess.run(
        [sys.executable, "-m", "qjt.cli", "account", "set-role", b.user_id, "ops"],
        env={**gateway.stack.env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    try:
        # A replica reuses who a key belongs to for up to 10 s.
        wait_until(lambda: b.http.get(f"/v1/jobs/{job_id}").status_code == 200, 15, "the ops role")
        assert b.http.get(f"/v1/jobs/{job_id}").json()["user_id"] == a.user_id
        mine = b.http.get("/v1/jobs", params={"tag": tag, "user": a.user_id}).json()["jobs"]
        assert [j["id"] for j in mine] == [job_id]
        assert b.http.get("/v1/accounts/me").json()["role"] == "ops"
    finally:
        gateway.stack.rows("UPDATE users SET role = 'user' WHERE id = %s RETURNING id", b.user_id)
    wait_until(
        lambda: b.http.get(f"/v1/jobs/{job_id}").status_code == 404, 15, "the user role again"
    )


# -- accounts, backends, usage ---------------------------------------------------------------


def test_accounts_instances_and_keys(gateway: Gateway) -> None:
    api = gateway.stack.api_url
    wrong = httpx.post(f"{api}/v1/accounts", json={"token": "not-a-real-token"}, timeout=30)
    assert wrong.status_code == 401 and "IBM did not accept" in wrong.json()["error"]["message"]
    refused = httpx.post(
        f"{api}/v1/accounts", json={"token": TOKEN_B, "instances": [OPEN]}, timeout=30
    )
    assert refused.status_code == 400 and OPEN in refused.json()["error"]["message"]

    a = gateway.a
    me = a.http.get("/v1/accounts/me").json()
    assert me["user_id"] == a.user_id and me["role"] == "user"
    assert {i["private"] for i in me["instances"]} == {True, False}
    assert a.http.delete(f"/v1/accounts/me/instances/{OPEN}").status_code == 204
    listed = {i["crn"]: i["enabled"] for i in a.http.get("/v1/accounts/me/instances").json()}
    assert listed[OPEN] is False
    assert a.http.post("/v1/accounts/me/instances", json={"crn": OPEN}).status_code == 201
    unknown = a.http.post("/v1/accounts/me/instances", json={"crn": "crn:v1:nope"})
    assert unknown.status_code == 404 and "cannot use" in unknown.json()["error"]["message"]

    created = a.http.post("/v1/accounts/me/api-keys", json={"name": "ci"})
    assert created.status_code == 201
    extra = created.json()
    headers = {"Authorization": f"Bearer {extra['api_key']}"}
    assert httpx.get(f"{api}/v1/accounts/me", headers=headers).status_code == 200
    listed_keys = a.http.get("/v1/accounts/me/api-keys").json()
    assert all("api_key" not in k for k in listed_keys)
    assert a.http.delete(f"/v1/accounts/me/api-keys/{extra['id']}").status_code == 204
    revoked = httpx.get(f"{api}/v1/accounts/me", headers=headers)
    assert revoked.status_code == 401 and "revoked" in revoked.json()["error"]["message"]
    assert httpx.get(f"{api}/v1/jobs").status_code == 401


def test_backends_list_detail_and_calibration_history(gateway: Gateway) -> None:
    b = gateway.b
    backends = b.http.get("/v1/backends").json()
    assert {x["name"] for x in backends} == {"ibm_torino", "ibm_fez", "ibm_quebec", "ibmq_manila"}
    assert sum(x["least_busy"] for x in backends) == 1
    least = next(x for x in backends if x["least_busy"])
    assert least["pending_jobs"] == min(x["pending_jobs"] for x in backends if x["operational"])

    detail = wait_until(
        lambda: (d := b.http.get(f"/v1/backends/{SMALL_BACKEND}").json())["calibration"] and d,
        90,
        "a calibration snapshot",
    )
    assert detail["num_qubits"] == 5 and detail["max_shots"] >= 1000
    assert [0, 1] in detail["coupling_map"] or [1, 0] in detail["coupling_map"]
    assert {"rz", "sx"} <= set(detail["basis_gates"])
    calibration = detail["calibration"]
    assert len(calibration["qubits"]) == 5
    assert calibration["median_t1_us"] > 0 and 0 <= calibration["median_readout_error"] < 1
    assert detail["readiness"]["usable_qubits"] == 5 - len(calibration["faulty_qubits"])

    history = b.http.get(
        f"/v1/backends/{SMALL_BACKEND}/calibration",
        params={"metric": "readout_error", "qubit": [0, 3]},
    ).json()
    assert history["points"] and {p["qubit"] for p in history["points"]} <= {0, 3}
    assert {p["metric"] for p in history["points"]} == {"readout_error"}
    missing = b.http.get("/v1/backends/ibm_kyiv")  # in user A's instances, not B's
    assert missing.status_code == 404 and "ibm_torino" in missing.json()["error"]["message"]


def test_usage_and_dashboard(gateway: Gateway) -> None:
    a = gateway.a
    usage = wait_until(
        lambda: (u := a.http.get("/v1/usage").json())["jobs_billed_seconds"] > 0 and u,
        60,
        "billed seconds of finished jobs",
    )
    open_instance = next(i for i in usage["instances"] if i["crn"] == OPEN)
    assert open_instance["usage_limit_seconds"] == 600
    assert open_instance["usage_remaining_seconds"] == pytest.approx(
        600 - open_instance["usage_consumed_seconds"]
    )
    dashboard = a.http.get("/v1/dashboard").json()
    assert dashboard["jobs_by_status"]["Completed"] >= 1
    assert dashboard["total_jobs"] == sum(dashboard["jobs_by_status"].values())
    assert dashboard["least_busy_backend"] and len(dashboard["recommendations"]) == 3


# -- bad input -------------------------------------------------------------------------------

BAD_SUBMISSIONS = [
    (
        {"primitive": "sampler", "circuits": ["OPENQASM 2.0;\nqreg q[2];\nfoo q[0];\n"]},
        "circuits[0]: invalid OpenQASM 2 at line 3",
    ),
    (
        {"primitive": "sampler", "circuits": ["OPENQASM 3.0;\nqubit[2] q;\nh q[0;\n"]},
        "circuits[0]: invalid OpenQASM 3 at line 3",
    ),
    ({"primitive": "sampler", "circuits": ["hello"]}, "OPENQASM 2.0;' or 'OPENQASM 3.0;' header"),
    ({"primitive": "sampler", "circuits": [BELL], "backend": "ibm_nowhere"}, "unknown backend"),
    ({"primitive": "sampler", "circuits": [BELL], "shots": 0}, "shots"),
    ({"primitive": "sampler", "circuits": [BELL], "shots": 10_000_000}, "out of range"),
    (
        {
            "primitive": "estimator",
            "circuits": [BELL_NO_MEASURE],
            "observables": [[{"pauli": "ZZZ"}]],
            "backend": SMALL_BACKEND,
        },
        "acts on 3 qubits but the circuit has 2",
    ),
    ({"primitive": "estimator", "circuits": [BELL_NO_MEASURE]}, "needs one observable"),
    ({"primitive": "sampler", "circuits": [BELL_NO_MEASURE]}, "measures nothing"),
    (
        {
            "primitive": "sampler",
            "backend": SMALL_BACKEND,
            "circuits": [
                'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[7];\ncreg c[7];\nmeasure q -> c;\n'
            ],
        },
        "uses 7 qubits but ibmq_manila has 5",
    ),
    ({"primitive": "teleport", "circuits": [BELL]}, "primitive"),
    ({"primitive": "sampler", "circuits": [BELL], "priority": 11}, "priority"),
]


@pytest.mark.parametrize(("body", "reason"), BAD_SUBMISSIONS)
def test_bad_submission_is_refused_with_its_reason_and_nothing_is_stored(
    gateway: Gateway, body: dict[str, Any], reason: str
) -> None:
    before = gateway.stack.rows("SELECT count(*) FROM submissions")
    commands_before = asyncio.run(_last_command_seq(gateway))
    answer = gateway.a.http.post("/v1/jobs", json=body)
    assert answer.status_code == 422, answer.text
    assert reason in answer.json()["error"]["message"]
    assert gateway.stack.rows("SELECT count(*) FROM submissions") == before
    assert asyncio.run(_last_command_seq(gateway)) == commands_before  # nothing queued


async def _last_command_seq(gateway: Gateway) -> int:
    import nats

    nc = await nats.connect(gateway.stack.env["QJT_NATS_URL"])
    try:
        return int((await nc.jetstream().stream_info("QJT_CMD")).state.last_seq)
    finally:
        await nc.close()


def test_body_too_large_and_bad_queries_are_refused(gateway: Gateway) -> None:
    a = gateway.a
    huge = {"primitive": "sampler", "circuits": [BELL + "// " + "x" * 2_000_000]}
    answer = a.http.post("/v1/jobs", json=huge)
    assert answer.status_code == 413 and "larger than" in answer.json()["error"]["message"]
    assert a.http.get("/v1/jobs", params={"status": "Sleeping"}).status_code == 422
    assert a.http.get("/v1/jobs", params={"cursor": "bm90LWEtY3Vyc29y"}).status_code == 422
    assert a.http.get("/v1/jobs/nope").status_code == 404


def test_rate_limit_per_key_answers_429_with_retry_after(gateway: Gateway) -> None:
    stack, a, b = gateway.stack, gateway.a, gateway.b
    stop_process(stack.procs["api"], 20)
    proc = stack.start("api", env={"QJT_API_RATE_LIMIT": "5/minute"})
    limited_url = stack.api_url
    try:
        stack.wait_healthy("api")
        headers_a = {"Authorization": f"Bearer {a.api_key}"}
        answers = [httpx.get(f"{limited_url}/v1/backends", headers=headers_a) for _ in range(6)]
        assert [r.status_code for r in answers] == [200] * 5 + [429]
        refused = answers[-1]
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert "rate limit of 5 per 1 minute" in refused.json()["error"]["message"]
        # Another key has its own budget.
        headers_b = {"Authorization": f"Bearer {b.api_key}"}
        assert httpx.get(f"{limited_url}/v1/backends", headers=headers_b).status_code == 200
    finally:
        stop_process(proc, 20)
        stack.start("api")
        stack.wait_healthy("api")
        for user in (a, b):
            user.http.base_url = httpx.URL(stack.api_url)


# -- crash safety ----------------------------------------------------------------------------


def test_submitter_killed_after_ibm_accepted_creates_exactly_one_ibm_job(
    gateway: Gateway,
) -> None:
    a, stack = gateway.a, gateway.stack
    gateway.emulator.set_faults(job_create_answer_delay_ms=8000)
    try:
        backend = a.quickest_backend()
        job_id = a.submit(primitive="sampler", circuits=[BELL], backend=backend, shots=100)
        instance = a.http.get(f"/v1/jobs/{job_id}").json()["instance"]
        service = runtime_service(TOKEN_A, instance=instance, ibm_url=gateway.emulator.url)
        wait_until(
            lambda: service.jobs(job_tags=[f"qjt-job:{job_id}"], limit=5),
            30,
            "IBM holding the job while its answer is delayed",
        )
        stack.procs["submitter"].send_signal(signal.SIGKILL)
        stack.procs["submitter"].wait(10)
    finally:
        gateway.emulator.set_faults()
    stack.start("submitter")
    stack.wait_healthy("submitter")
    job = a.wait_status(job_id, "Completed", timeout_s=120)
    # The command comes back after its ack deadline; the new submitter finds the IBM job
    # by its tag instead of creating another.
    wait_until(
        lambda: f"cmd.job.submit for job {job_id} handled: job.submitted" in stack.log("submitter"),
        60,
        "the redelivered submit command",
    )
    on_ibm = service.jobs(job_tags=[f"qjt-job:{job_id}"], limit=10)
    assert [j.job_id() for j in on_ibm] == [job["ibm_job_id"]]


def test_submitter_drains_on_sigterm(gateway: Gateway) -> None:
    stack = gateway.stack
    proc = stack.procs["submitter"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert "submitter stopped" in stack.log("submitter")
    stack.start("submitter")
    stack.wait_healthy("submitter")


# -- secrets (last: reads everything the stack wrote) -----------------------------------------


READ_PATHS = (
    "/v1/jobs?limit=500",
    "/v1/jobs/export?format=csv",
    "/v1/jobs/export?format=json",
    "/v1/accounts/me",
    "/v1/accounts/me/api-keys",
    "/v1/usage",
    "/v1/dashboard",
    "/v1/backends",
)


async def test_tokens_and_api_keys_appear_nowhere(gateway: Gateway, tmp_path: Path) -> None:
    a, b = gateway.a, gateway.b
    secrets = {a.token, b.token, a.api_key, b.api_key, gateway.stack.fernet_key}
    outputs = [gateway.stack.all_logs()]
    for user in (a, b):
        for path in READ_PATHS:
            outputs.append(user.http.get(path).text)
        for job in user.http.get("/v1/jobs?limit=50").json()["jobs"]:
            outputs.append(user.http.get(f"/v1/jobs/{job['id']}").text)
    outputs.append(json.dumps(gateway.stack.rows("SELECT payload FROM job_events")))
    outputs.append(await _stream_contents(gateway))
    text = "\n".join(outputs)
    assert len(text) > 100_000  # the capture really holds the run's output
    for secret in secrets:
        assert secret not in text


async def _stream_contents(gateway: Gateway) -> str:
    """Every message still held by the command, event and dead-letter streams."""
    import nats

    nc = await nats.connect(gateway.stack.env["QJT_NATS_URL"])
    js = nc.jetstream()
    chunks: list[str] = []
    for stream in ("QJT_CMD", "QJT_EVT", "QJT_DLQ"):
        info = await js.stream_info(stream)
        if not info.state.messages:
            continue
        for seq in range(max(info.state.first_seq, 1), info.state.last_seq + 1):
            try:
                msg = await js.get_msg(stream, seq)
            except nats.js.errors.NotFoundError:
                continue
            chunks.append((msg.data or b"").decode(errors="replace"))
    await nc.close()
    return "\n".join(chunks)


def test_notification_channels_through_the_api_post_a_finished_job_once(
    gateway: Gateway,
) -> None:
    a, b = gateway.a, gateway.b
    slack = FakeSlack().start()
    try:
        hook = slack.script("/hooks/services/T000/B000/secret-path", "200")
        made = a.http.post(
            "/v1/notifications/channels",
            json={"kind": "slack_webhook", "url": hook, "name": "team"},
        )
        assert made.status_code == 201, made.text
        channel = made.json()
        assert channel["target_hint"] == "http://127.0.0.1/…" and channel["signing_secret"] is None
        listed = a.http.get("/v1/notifications/channels").text
        assert "secret-path" not in listed and str(channel["id"]) in listed
        assert b.http.get("/v1/notifications/channels").json() == []
        team = a.http.post(
            "/v1/notifications/channels", json={"kind": "webhook", "url": hook, "scope": "all"}
        )
        assert team.status_code == 403
        missing = a.http.post("/v1/notifications/channels", json={"kind": "slack_bot"})
        assert missing.status_code == 422 and "token" in missing.json()["error"]["message"]
        signed = a.http.post("/v1/notifications/channels", json={"kind": "webhook", "url": hook})
        assert signed.status_code == 201 and len(signed.json()["signing_secret"]) > 30
        assert a.http.delete(f"/v1/notifications/channels/{signed.json()['id']}").status_code == 204

        job_id = a.submit(primitive="aer", circuits=[BELL], shots=100)
        a.wait_status(job_id, "Completed", timeout_s=90)
        [post] = wait_until(slack.posts, 60, "the Slack post for the job")
        time.sleep(2)
        assert len(slack.posts()) == 1
        assert job_id in json.dumps(post.body) and "aer" in json.dumps(post.body)
        deliveries = a.http.get("/v1/notifications/deliveries").json()
        assert [d["status"] for d in deliveries] == ["sent"]
    finally:
        slack.stop()
