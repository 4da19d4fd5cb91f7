"""Submitter handlers with fake ports: what gets published for each situation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from qjt.contracts import CancelJob, ObservableTerm, SubmitJob
from services.submitter.handlers import IBM_ATTEMPTS, Ports, cancel_job, submit_job
from services.submitter.ibm import (
    Credential,
    IbmJobRef,
    IbmRefused,
    IbmUnavailable,
    NotRunnable,
)
from services.submitter.ledger import KnownJob

CRED = Credential(1, "ibm_quantum_platform", "crn:x", "secret-token")
BELL = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nh q[0];\nmeasure q -> c;\n'


def command(**overrides: Any) -> SubmitJob:
    values: dict[str, Any] = {
        "job_id": "j1",
        "user_id": "u1",
        "primitive": "sampler",
        "circuits": [BELL],
        "backend": "ibm_kyiv",
        "instance": "crn:x",
    }
    return SubmitJob(**(values | overrides))


@dataclass
class FakeIbm:
    on_ibm: dict[str, IbmJobRef] = field(default_factory=dict)
    submit_errors: list[Exception] = field(default_factory=list)
    submitted: int = 0
    cancelled: list[str] = field(default_factory=list)
    lose_answer: bool = False

    async def find(self, cred: Credential, job_id: str) -> IbmJobRef | None:
        return self.on_ibm.get(job_id)

    async def submit(self, cred: Credential, command: SubmitJob) -> IbmJobRef:
        if self.submit_errors:
            raise self.submit_errors.pop(0)
        self.submitted += 1
        ref = IbmJobRef(f"ibm-{self.submitted}", command.backend, 2.5)
        self.on_ibm[command.job_id] = ref
        if self.lose_answer:
            self.lose_answer = False
            raise IbmUnavailable("connection reset while reading the answer")
        return ref

    async def cancel(self, cred: Credential, ibm_job_id: str) -> None:
        self.cancelled.append(ibm_job_id)


@dataclass
class FakeLedger:
    jobs: dict[str, KnownJob] = field(default_factory=dict)
    credentials: bool = True

    async def credential(self, user_id: str, instance: str) -> Credential | None:
        return CRED if self.credentials else None

    async def job(self, job_id: str) -> KnownJob | None:
        return self.jobs.get(job_id)


class FakeAer:
    async def run(
        self, circuits: list[str], shots: int | None, observables: list[list[ObservableTerm]] | None
    ) -> dict[str, Any]:
        return {"counts": [{"00": shots or 1}] * len(circuits)}


def ports(ibm: FakeIbm | None = None, ledger: FakeLedger | None = None) -> Ports:
    return Ports(ibm=ibm or FakeIbm(), aer=FakeAer(), ledger=ledger or FakeLedger(), retry_s=0)


async def test_a_new_job_is_submitted_once_and_reported() -> None:
    ibm = FakeIbm()
    events = await submit_job(command(), ports(ibm))
    assert [(e.type, getattr(e, "ibm_job_id", None)) for e in events] == [
        ("job.submitted", "ibm-1")
    ]
    assert events[0].estimated_usage_seconds == 2.5  # type: ignore[attr-defined]
    assert ibm.submitted == 1


async def test_redelivered_submit_finds_the_ibm_job_instead_of_creating_another() -> None:
    ibm = FakeIbm(on_ibm={"j1": IbmJobRef("ibm-earlier", "ibm_kyiv", None)})
    events = await submit_job(command(), ports(ibm))
    assert ibm.submitted == 0
    assert events[0].ibm_job_id == "ibm-earlier"  # type: ignore[attr-defined]


async def test_a_lost_answer_is_retried_by_looking_the_job_up_first() -> None:
    ibm = FakeIbm(lose_answer=True)
    events = await submit_job(command(), ports(ibm))
    assert ibm.submitted == 1 and events[0].ibm_job_id == "ibm-1"  # type: ignore[attr-defined]


async def test_ibm_refusal_becomes_a_failed_event_with_ibms_reason() -> None:
    ibm = FakeIbm(submit_errors=[IbmRefused("'Error 400: backend ibm_kyiv is not available'")])
    (event,) = await submit_job(command(), ports(ibm))
    assert event.type == "job.failed"
    assert "backend ibm_kyiv is not available" in event.reason  # type: ignore[attr-defined]


async def test_a_circuit_that_cannot_run_on_the_backend_fails_saying_so() -> None:
    ibm = FakeIbm(submit_errors=[NotRunnable("cannot transpile: too few qubits")])
    (event,) = await submit_job(command(), ports(ibm))
    assert event.type == "job.failed" and ibm.submitted == 0
    assert event.reason == (  # type: ignore[attr-defined]
        "the circuits cannot run on ibm_kyiv: cannot transpile: too few qubits"
    )


async def test_an_outage_is_retried_then_reported() -> None:
    ibm = FakeIbm(submit_errors=[IbmUnavailable("503")] * 2)
    events = await submit_job(command(), ports(ibm))
    assert events[0].type == "job.submitted" and ibm.submitted == 1
    down = FakeIbm(submit_errors=[IbmUnavailable("503 Service unavailable")] * IBM_ATTEMPTS)
    (event,) = await submit_job(command(), ports(down))
    assert event.type == "job.failed" and "IBM unavailable" in event.reason  # type: ignore[attr-defined]


async def test_a_job_cancelled_before_submission_is_never_sent() -> None:
    ibm = FakeIbm()
    ledger = FakeLedger(jobs={"j1": KnownJob("CANCELLED", "crn:x", None, "sampler")})
    assert await submit_job(command(), ports(ibm, ledger)) == []
    assert ibm.submitted == 0


async def test_missing_credential_fails_the_job_naming_the_instance() -> None:
    (event,) = await submit_job(command(), ports(ledger=FakeLedger(credentials=False)))
    assert event.type == "job.failed" and "crn:x" in event.reason  # type: ignore[attr-defined]


async def test_local_aer_job_reports_its_whole_lifecycle() -> None:
    events = await submit_job(command(primitive="aer", instance=None, shots=10), ports())
    assert [e.type for e in events] == ["job.submitted", "job.status", "job.status", "job.result"]
    assert [getattr(e, "status", None) for e in events[1:3]] == ["RUNNING", "DONE"]
    assert events[-1].counts == [{"00": 10}]  # type: ignore[attr-defined]


@pytest.mark.parametrize("on_ibm", [True, False])
async def test_cancel_cancels_on_ibm_or_records_it_before_submission(on_ibm: bool) -> None:
    ibm = FakeIbm(on_ibm={"j1": IbmJobRef("ibm-7", "ibm_kyiv", None)} if on_ibm else {})
    cancel = CancelJob(job_id="j1", user_id="u1", instance="crn:x", primitive="sampler")
    (event,) = await cancel_job(cancel, ports(ibm))
    assert event.type == "job.cancelled"
    assert ibm.cancelled == (["ibm-7"] if on_ibm else [])


async def test_token_never_appears_in_a_classified_error() -> None:
    from services.submitter.ibm import classify

    error = classify(RuntimeError("401 bad token secret-token for user"), "secret-token")
    assert "secret-token" not in str(error) and isinstance(error, IbmRefused)
    assert isinstance(classify(RuntimeError("Error 503: Service unavailable"), "t"), IbmUnavailable)
