"""The emulator's HTTP API: enough of IBM Cloud and Qiskit Runtime for the unmodified client.

Paths (all under the emulator's base URL):
- `POST /iam/identity/token`: IAM apikey grant → a signed, expiring bearer token.
- `POST /search/v3/resources/search`, `GET /catalog/api/v1/{plan}`: the Global Search
  and Global Catalog calls the client makes to discover an account's instances.
- `/api/v1/...`: the Runtime REST subset (backends, configuration, properties, status,
  jobs create/list/get/results/cancel/tags/metrics/logs, instance usage), scoped to the
  instance named by the `Service-CRN` header.
- `/admin/faults`: fault injection (429 with Retry-After, 500/503, latency, failing jobs).
The client is pointed here with `IAM_URL`, `GLOBAL_SEARCH_URL`, `GLOBAL_CATALOG_URL` and a
`url_resolver` (see `qjt/ibm.py`); against real IBM none of them are set.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import multiprocessing
import random
import secrets
import time
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qs

import jwt
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import Counter
from pydantic import BaseModel, Field

from qjt import __version__
from qjt.config import Settings, get_settings
from qjt.webapp import add_metrics_route
from services.emulator import execution
from services.emulator.accounts import Accounts, Instance, load_accounts
from services.emulator.devices import Clock, Device, load_devices
from services.emulator.jobs import Job, JobStore, new_job_id
from services.emulator.queues import BackendQueue, QueueItem, job_service_s, queue_for

log = logging.getLogger("qjt.emulator")
INJECTED = Counter("qjt_emulator_injected_faults_total", "Faults injected", ["kind"])
TOKEN_TTL_S = 3600


class Faults(BaseModel):
    """Fault injection rates (0..1) and added latency; all off by default."""

    rate_429: float = Field(0.0, ge=0, le=1, description="Share of Runtime calls answered 429.")
    rate_500: float = Field(0.0, ge=0, le=1, description="Share answered 500.")
    rate_503: float = Field(0.0, ge=0, le=1, description="Share answered 503.")
    latency_ms: float = Field(0.0, ge=0, le=60_000, description="Added to every Runtime call.")
    rate_drop: float = Field(0.0, ge=0, le=1, description="Share of connections dropped.")
    job_error_rate: float = Field(0.0, ge=0, le=1, description="Share of jobs ending in ERROR.")
    retry_after_s: int = Field(1, ge=0, le=3600, description="Retry-After on a 429.")
    hold_backends: list[str] = Field(
        default_factory=list,
        description="Backends whose queues start nothing (jobs stay QUEUED) until released.",
    )
    job_create_answer_delay_ms: float = Field(
        0.0,
        ge=0,
        le=600_000,
        description="Hold the answer to a job submission this long after the job was created "
        "(IBM accepted it, the caller has not heard yet).",
    )


class HistorySpec(BaseModel):
    """Finished jobs to record in an instance's history."""

    instance: str
    backend: str
    count: int = Field(1000, ge=1, le=1_000_000)
    span_s: float = Field(
        30 * 86_400, gt=0, description="Spread over this many past (wall-clock) seconds."
    )
    tags: list[str] = Field(default_factory=list)


_EMPTY_RESULT = '{"__type__": "PrimitiveResult", "__value__": {"pub_results": [], "metadata": {}}}'


@dataclass
class Emulator:
    """Everything the emulator knows; one per process."""

    settings: Settings
    clock: Clock
    devices: dict[str, Device]
    accounts: Accounts
    faults: Faults = field(default_factory=Faults)
    jobs: JobStore = field(default_factory=JobStore)
    queues: dict[str, BackendQueue] = field(default_factory=dict)
    signing_key: str = field(default_factory=lambda: secrets.token_hex(32))
    pool: ProcessPoolExecutor | None = None
    rng: random.Random = field(default_factory=random.Random)

    def now_s(self) -> float:
        return self.clock.epoch_s()

    def queue(self, backend: str) -> BackendQueue:
        """The backend's queue, simulated from the start of today (emulated) on."""
        if backend not in self.queues:
            day_start = (self.now_s() // 86_400) * 86_400
            self.queues[backend] = queue_for(
                self.devices[backend],
                day_start,
                held=lambda: backend in self.faults.hold_backends,
            )
        return self.queues[backend]


def ibm_error(status: int, message: str, code: int | str) -> HTTPException:
    """An error in the shape IBM's APIs use."""
    return HTTPException(status, detail={"errors": [{"message": message, "code": code}]})


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        clock = Clock(settings.emulator_speedup)
        devices = load_devices(settings.emulator_seed, clock)
        state = Emulator(
            settings=settings,
            clock=clock,
            devices=devices,
            accounts=load_accounts(settings.emulator_accounts_file, list(devices)),
            rng=random.Random(settings.emulator_seed),
            faults=Faults.model_validate(settings.emulator_faults),
        )
        state.pool = ProcessPoolExecutor(
            settings.emulator_workers, mp_context=multiprocessing.get_context("spawn")
        )
        app.state.emulator = state
        log.info("emulator ready", extra={"backends": len(devices)})
        try:
            yield
        finally:
            state.pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="IBM Quantum emulator", version=__version__, lifespan=lifespan)
    add_metrics_route(app)
    _add_health(app)
    app.add_middleware(FaultInjector)
    _add_iam_and_discovery(app)
    _add_runtime(app)
    _add_admin(app)
    return app


def emulator_of(request: Request) -> Emulator:
    state: Emulator = request.app.state.emulator
    return state


def _add_health(app: FastAPI) -> None:
    @app.get("/healthz", tags=["health"], summary="Readiness of the emulator")
    async def healthz(request: Request) -> dict[str, Any]:
        state = getattr(request.app.state, "emulator", None)
        return {
            "service": "emulator",
            "status": "ok",
            "checks": {"http": True, "backends": bool(state and state.devices)},
        }


class FaultInjector:
    """ASGI middleware: the injected faults, on Runtime API calls only.

    A dropped connection promises a body and closes the connection before sending it,
    which is what a client sees when a connection breaks mid-response.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        state: Emulator | None = getattr(scope.get("app"), "state", None) and getattr(
            scope["app"].state, "emulator", None
        )
        if scope["type"] != "http" or state is None or not scope["path"].startswith("/api/v1"):
            await self.app(scope, receive, send)
            return
        faults = state.faults
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        roll = state.rng.random()
        for rate, status, message in (
            (faults.rate_429, 429, "Too many requests"),
            (faults.rate_500, 500, "Internal error"),
            (faults.rate_503, 503, "Service unavailable"),
        ):
            if roll < rate:
                INJECTED.labels(str(status)).inc()
                headers = {"Retry-After": str(faults.retry_after_s)} if status == 429 else None
                body = {"errors": [{"message": message, "code": 3000 + status}]}
                await JSONResponse(body, status, headers=headers)(scope, receive, send)
                return
            roll -= rate
        if roll < faults.rate_drop:
            INJECTED.labels("drop").inc()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", b"4096"),
                    ],
                }
            )
            raise ConnectionAbortedError("injected dropped connection")
        if (
            faults.job_create_answer_delay_ms
            and scope["method"] == "POST"
            and (scope["path"].rstrip("/") == "/api/v1/jobs")
        ):
            delay_s = faults.job_create_answer_delay_ms / 1000

            async def late_send(message: Any) -> None:
                if message["type"] == "http.response.start":
                    await asyncio.sleep(delay_s)
                await send(message)

            await self.app(scope, receive, late_send)
            return
        await self.app(scope, receive, send)


# ---------------------------------------------------------------------------
# IAM, Global Search, Global Catalog


def _add_iam_and_discovery(app: FastAPI) -> None:
    @app.post("/iam/identity/token", tags=["iam"], summary="Exchange an API key for a bearer token")
    async def iam_token(request: Request) -> JSONResponse:
        state = emulator_of(request)
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if form.get("grant_type") != "urn:ibm:params:oauth:grant-type:apikey":
            return JSONResponse(
                {
                    "errorCode": "BXNIM0109E",
                    "errorMessage": "Property missing or empty: grant_type",
                },
                400,
            )
        account = state.accounts.account_for_key(str(form.get("apikey", "")))
        if account is None:
            return JSONResponse(
                {
                    "errorCode": "BXNIM0415E",
                    "errorMessage": "Provided API key could not be found.",
                    "context": {"requestId": secrets.token_hex(8)},
                },
                400,
            )
        now = int(time.time())
        token = jwt.encode(
            {
                "iam_id": f"iam-{account}",
                "sub": account,
                "account": {"bss": account},
                "iat": now,
                "exp": now + TOKEN_TTL_S,
            },
            state.signing_key,
            algorithm="HS256",
        )
        return JSONResponse(
            {
                "access_token": token,
                "refresh_token": "not_supported",
                "token_type": "Bearer",
                "expires_in": TOKEN_TTL_S,
                "expiration": now + TOKEN_TTL_S,
            }
        )

    @app.post("/search/v3/resources/search", tags=["discovery"], summary="Global Search")
    async def global_search(
        request: Request, account: Annotated[str, Depends(bearer_account)]
    ) -> Any:
        state = emulator_of(request)
        items = [
            {
                "crn": inst.crn,
                "name": inst.name,
                "service_plan_unique_id": inst.plan_id,
                "tags": [],
                "doc": {"extensions": {"quantum_computing": {"backends": list(inst.backends)}}},
            }
            for inst in state.accounts.instances_of(account)
        ]
        return {"items": items, "limit": 100, "search_cursor": None}

    @app.get("/catalog/api/v1/{plan_id}", tags=["discovery"], summary="Global Catalog entry")
    async def catalog_entry(
        plan_id: str, request: Request, _account: Annotated[str, Depends(bearer_account)]
    ) -> Any:
        instance = emulator_of(request).accounts.plans().get(plan_id)
        if instance is None:
            raise HTTPException(404, detail={"message": f"catalog entry {plan_id} not found"})
        return {
            "id": plan_id,
            "name": instance.plan,
            "overview_ui": {"en": {"display_name": instance.plan.capitalize()}},
            "metadata": {"pricing": {"type": instance.pricing_type}},
        }


async def bearer_account(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> str:
    """The account a request's credentials belong to (bearer token or raw apikey)."""
    state = emulator_of(request)
    if not authorization:
        raise ibm_error(401, "Missing Authorization header", 1001)
    scheme, _, credential = authorization.partition(" ")
    if scheme.lower() == "apikey":
        account = state.accounts.account_for_key(credential)
        if account:
            return account
    elif scheme.lower() == "bearer":
        try:
            claims = jwt.decode(credential, state.signing_key, algorithms=["HS256"])
            return str(claims["sub"])
        except jwt.PyJWTError:
            pass
    raise ibm_error(401, "Invalid or expired credentials", 1002)


async def instance_of(
    request: Request,
    account: Annotated[str, Depends(bearer_account)],
    service_crn: Annotated[str | None, Header(alias="Service-CRN")] = None,
) -> Instance:
    """The instance named by Service-CRN, which must belong to the caller's account."""
    if not service_crn:
        raise ibm_error(400, "Missing Service-CRN header", 1003)
    instance = emulator_of(request).accounts.instance(account, service_crn)
    if instance is None:
        raise ibm_error(403, f"You are not authorized to access instance {service_crn}", 1004)
    return instance


InstanceDep = Annotated[Instance, Depends(instance_of)]


# ---------------------------------------------------------------------------
# Runtime REST subset


def _device(request: Request, instance: Instance, name: str) -> Device:
    state = emulator_of(request)
    if name not in instance.backends or name not in state.devices:
        raise ibm_error(404, f"Backend {name} not found", 1216)
    return state.devices[name]


def _job(request: Request, instance: Instance, job_id: str) -> Job:
    job = emulator_of(request).jobs.get(job_id)
    if job is None or job.instance != instance.crn:
        raise ibm_error(404, f"Job {job_id} not found", 1291)
    return job


def _add_runtime(app: FastAPI) -> None:
    api = "/api/v1"

    @app.get(f"{api}/backends", tags=["runtime"], summary="Backends this instance may use")
    async def backends(request: Request, instance: InstanceDep) -> Any:
        state = emulator_of(request)
        now = state.clock.now()
        devices = []
        for name in instance.backends:
            device = state.devices[name]
            maintenance = device.in_maintenance(now) is not None
            devices.append(
                {
                    "name": name,
                    "qubits": device.num_qubits,
                    "status": {
                        "name": "paused" if maintenance else "online",
                        "reason": "maintenance" if maintenance else "available",
                    },
                    "queue_length": state.queue(name).pending(state.now_s()),
                    "processor_type": device.configuration.get("processor_type", {}),
                    "clops": device.configuration.get("clops_h"),
                    "performance_metrics": {},
                }
            )
        return {"devices": devices}

    @app.get(f"{api}/backends/{{name}}/configuration", tags=["runtime"])
    async def configuration(name: str, request: Request, instance: InstanceDep) -> Any:
        return _device(request, instance, name).configuration

    @app.get(f"{api}/backends/{{name}}/properties", tags=["runtime"])
    async def properties(
        name: str,
        request: Request,
        instance: InstanceDep,
        updated_before: Annotated[datetime | None, Query()] = None,
    ) -> Any:
        device = _device(request, instance, name)
        moment = emulator_of(request).clock.now()
        if updated_before is not None:
            moment = min(moment, emulator_of(request).clock.emulated(updated_before))
        return device.properties(moment) or {}

    @app.get(f"{api}/backends/{{name}}/status", tags=["runtime"])
    async def status(name: str, request: Request, instance: InstanceDep) -> Any:
        state = emulator_of(request)
        device = _device(request, instance, name)
        now = state.clock.now()
        maintenance = device.in_maintenance(now) is not None
        return {
            "state": not maintenance,
            "status": "maintenance" if maintenance else "active",
            "message": "scheduled maintenance" if maintenance else "",
            "length_queue": state.queue(name).pending(state.now_s()),
            "backend_version": device.configuration.get("backend_version", "1.0.0"),
        }

    @app.get(f"{api}/instances/usage", tags=["runtime"], summary="Instance usage and limit")
    async def usage(request: Request, instance: InstanceDep) -> Any:
        state = emulator_of(request)
        now = state.now_s()
        consumed = sum(
            job.quantum_seconds(now) for job in state.jobs.candidates(instance.crn, None, []).jobs
        )
        limit = instance.usage_limit_seconds
        return {
            "instance_id": instance.crn,
            "plan_id": instance.plan_id,
            "usage_consumed_seconds": round(consumed, 3),
            "usage_limit_seconds": limit,
            "usage_allocation_seconds": limit,
            "usage_limit_reached": bool(limit is not None and consumed >= limit),
        }

    @app.post(f"{api}/jobs", tags=["runtime"], summary="Run a primitive job")
    async def create_job(request: Request, instance: InstanceDep) -> Any:
        state = emulator_of(request)
        try:
            body = json.loads(await request.body())
        except ValueError:
            raise ibm_error(400, "Request body is not JSON", 1400) from None
        program_id = body.get("program_id")
        if program_id not in ("sampler", "estimator"):
            raise ibm_error(404, f"Program {program_id} not found", 1404)
        backend = body.get("backend")
        if not backend:
            raise ibm_error(400, "backend is required", 1400)
        device = _device(request, instance, backend)
        params = body.get("params") or {}
        pubs = params.get("pubs") if isinstance(params, dict) else None
        if not isinstance(pubs, list) or not pubs:
            raise ibm_error(400, "params.pubs must be a non-empty list", 1400)
        now = state.now_s()
        job_id = new_job_id()
        service_s = job_service_s(sum(_pub_shots(program_id, pub) for pub in pubs))
        item = state.queue(backend).submit(job_id, service_s, now)
        job = Job(
            id=job_id,
            account_id=instance.account_id,
            instance=instance.crn,
            backend=backend,
            program_id=program_id,
            params_json=json.dumps(params),
            tags=list(body.get("tags") or []),
            created_s=now,
            queue=state.queue(backend),
            item=item,
            num_pubs=len(pubs),
            private=bool(body.get("private", False)),
        )
        if state.rng.random() < state.faults.job_error_rate:
            job.injected_error = "Injected failure: the job ended in ERROR on the emulated backend."
        state.jobs.add(job)
        _start_execution(state, job, device)
        return {"id": job_id, "backend": backend}

    @app.get(f"{api}/jobs", tags=["runtime"], summary="List jobs of this instance")
    async def list_jobs(  # noqa: PLR0917 (FastAPI query parameters)
        request: Request,
        instance: InstanceDep,
        limit: Annotated[int, Query(ge=1, le=200)] = 20,
        offset: Annotated[int, Query(ge=0)] = 0,
        backend: str | None = None,
        pending: bool | None = None,
        program: str | None = None,
        tags: Annotated[list[str] | None, Query()] = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        sort: str = "DESC",
    ) -> Any:
        state = emulator_of(request)
        now = state.now_s()
        wanted = set(tags or [])
        index = state.jobs.candidates(instance.crn, backend, sorted(wanted))
        in_range = index.between(
            _emulated_s(state.clock, created_after), _emulated_s(state.clock, created_before)
        )
        newest_first = sort.upper() != "ASC"

        def matches(job: Job) -> bool:
            if (backend and job.backend != backend) or (program and job.program_id != program):
                return False
            if wanted and not wanted <= set(job.tags):
                return False
            return pending is None or (job.state(now)[0] in ("QUEUED", "RUNNING")) == pending

        if not (program or pending is not None or len(wanted) > 1 or (backend and wanted)):
            # The index holds exactly the matching jobs: page by slicing.
            ordered = in_range[::-1] if newest_first else in_range
            selected = ordered
        else:
            selected = [
                job for job in (reversed(in_range) if newest_first else in_range) if matches(job)
            ]
        page = selected[offset : offset + limit]
        return {"jobs": [job.summary(now, state.clock) for job in page], "count": len(selected)}

    @app.get(f"{api}/jobs/{{job_id}}", tags=["runtime"])
    async def get_job(job_id: str, request: Request, instance: InstanceDep) -> Any:
        job = _job(request, instance, job_id)
        state = emulator_of(request)
        return job.summary(state.now_s(), state.clock)

    @app.get(f"{api}/jobs/{{job_id}}/results", tags=["runtime"], response_class=PlainTextResponse)
    async def job_results(job_id: str, request: Request, instance: InstanceDep) -> str:
        job = _job(request, instance, job_id)
        status, reason = job.state(emulator_of(request).now_s())
        if status == "DONE" and job.result_json is not None:
            return job.result_json
        if status == "ERROR":
            return reason or "job failed"
        raise ibm_error(404, f"Results for job {job_id} are not available yet", 1292)

    @app.get(f"{api}/jobs/{{job_id}}/metrics", tags=["runtime"])
    async def job_metrics(job_id: str, request: Request, instance: InstanceDep) -> Any:
        job = _job(request, instance, job_id)
        state = emulator_of(request)
        return job.metrics(state.now_s(), state.clock)

    @app.get(f"{api}/jobs/{{job_id}}/logs", tags=["runtime"], response_class=PlainTextResponse)
    async def job_logs(job_id: str, request: Request, instance: InstanceDep) -> str:
        job = _job(request, instance, job_id)
        status, reason = job.state(emulator_of(request).now_s())
        return f"job {job.id} on {job.backend}: {status}" + (f" ({reason})" if reason else "")

    @app.post(f"{api}/jobs/{{job_id}}/cancel", tags=["runtime"], status_code=204)
    async def cancel_job(job_id: str, request: Request, instance: InstanceDep) -> Response:
        state = emulator_of(request)
        job = _job(request, instance, job_id)
        now = state.now_s()
        status, _ = job.state(now)
        if status not in ("QUEUED", "RUNNING"):
            raise ibm_error(409, f"Job {job_id} is already in a final state ({status})", 3209)
        job.queue.cancel(job.item, now)
        job.cancelled_s = now
        return Response(status_code=204)

    @app.put(f"{api}/jobs/{{job_id}}/tags", tags=["runtime"], status_code=204)
    async def update_tags(job_id: str, request: Request, instance: InstanceDep) -> Response:
        job = _job(request, instance, job_id)
        try:
            tags = json.loads(await request.body())["tags"]
        except (ValueError, KeyError, TypeError):
            raise ibm_error(400, 'Body must be {"tags": [...]}', 1400) from None
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ibm_error(400, "tags must be a list of strings", 1400)
        emulator_of(request).jobs.retag(job, tags)
        return Response(status_code=204)


def _pub_shots(program_id: str, pub: Any) -> int:
    """Shots a PUB asks for (Estimator: from its precision), for the queue's cost estimate."""
    if not isinstance(pub, list | tuple):
        return 4096
    if program_id == "sampler" and len(pub) > 2 and isinstance(pub[2], int | float) and pub[2] > 0:
        return int(pub[2])
    if (
        program_id == "estimator"
        and len(pub) > 3
        and isinstance(pub[3], int | float)
        and pub[3] > 0
    ):
        return int(min(1 / pub[3] ** 2, 1_000_000))
    return 4096


def _emulated_s(clock: Clock, shown: datetime | None) -> float | None:
    """Emulated POSIX seconds of a client's wall-clock time, if one was given."""
    return None if shown is None else clock.emulated(shown).timestamp()


def _start_execution(state: Emulator, job: Job, device: Device) -> None:
    """Run the job on Aer in the process pool as soon as it is accepted."""
    assert state.pool is not None
    loop = asyncio.get_running_loop()
    props = device.properties(state.clock.now())
    run = functools.partial(
        execution.execute,
        job_id=job.id,
        program_id=job.program_id,
        params_json=job.params_json,
        backend=job.backend,
        props=props,
        configuration=device.configuration,
        max_qubits=state.settings.emulator_max_noisy_qubits,
    )
    pool = state.pool
    future = loop.run_in_executor(pool, run)

    def done(fut: asyncio.Future[str]) -> None:
        job.ready_s = state.now_s()
        if fut.cancelled():
            job.error = "job was not run"
        elif isinstance(fut.exception(), BrokenProcessPool):
            # A worker died (e.g. out of memory): this job fails, later ones get a new pool.
            job.error = "the emulated backend's executor crashed while running this job"
            if state.pool is not None and state.pool is pool:
                state.pool = ProcessPoolExecutor(
                    state.settings.emulator_workers, mp_context=multiprocessing.get_context("spawn")
                )
                log.error("Aer worker pool broke; replaced it", extra={"job_id": job.id})
        elif (exc := fut.exception()) is not None:
            job.error = (
                str(exc)
                if isinstance(exc, execution.ExecutionError)
                else f"{type(exc).__name__}: {exc}"
            )
        else:
            job.result_json = fut.result()

    future.add_done_callback(done)


# ---------------------------------------------------------------------------
# Admin


def _add_admin(app: FastAPI) -> None:
    @app.get("/admin/faults", tags=["admin"], summary="Current fault injection")
    async def get_faults(request: Request) -> Faults:
        return emulator_of(request).faults

    @app.put("/admin/faults", tags=["admin"], summary="Set fault injection rates")
    async def set_faults(faults: Faults, request: Request) -> Faults:
        emulator_of(request).faults = faults
        log.warning("fault injection set", extra={"faults": faults.model_dump()})
        return faults

    @app.post("/admin/history", tags=["admin"], summary="Record finished jobs (load tests, demos)")
    async def add_history(spec: HistorySpec, request: Request) -> dict[str, int]:
        state = emulator_of(request)
        owner = next(
            (
                i
                for group in state.accounts.instances.values()
                for i in group
                if i.crn == spec.instance
            ),
            None,
        )
        if owner is None:
            raise HTTPException(404, detail=f"no instance {spec.instance}")
        if spec.backend not in owner.backends:
            raise HTTPException(400, detail=f"{spec.backend} is not in instance {owner.name}")
        now = state.now_s()
        queue = state.queue(spec.backend)
        span_s = spec.span_s * state.clock.speedup  # wall-clock seconds, as clients see them
        for k in range(spec.count):
            created = now - span_s + span_s * k / max(spec.count, 1)
            item = QueueItem(created, 2.0, start_s=created + 30.0, end_s=created + 32.0)
            job_id = new_job_id()
            state.jobs.add(
                Job(
                    id=job_id,
                    account_id=owner.account_id,
                    instance=owner.crn,
                    backend=spec.backend,
                    program_id="sampler",
                    params_json="{}",
                    tags=list(spec.tags),
                    created_s=created,
                    queue=queue,
                    item=item,
                    num_pubs=1,
                    result_json=_EMPTY_RESULT,
                    ready_s=created + 32.0,
                )
            )
        return {"added": spec.count, "total": len(state.jobs)}

    @app.get("/admin/clock", tags=["admin"], summary="Emulated time")
    async def clock(request: Request) -> dict[str, Any]:
        state = emulator_of(request)
        now = state.clock.now()
        return {
            "now": now.isoformat(),
            "shown_now": datetime.fromtimestamp(state.clock.shown_s(now.timestamp()), UTC),
            "speedup": state.clock.speedup,
        }


app = create_app()
