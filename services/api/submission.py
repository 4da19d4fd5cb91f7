"""Checking a submit request before anything is queued: circuits, observables, backend.

Every refusal is an `ApiError` naming the field and the problem, raised before the
request is stored or published, so a bad request leaves nothing behind.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import anyio

from qjt.bus import RpcError
from qjt.circuits import CircuitError, CircuitSummary, observable, parse_circuit, summarize
from qjt.contracts import (
    DEFAULT_SHOTS,
    SYSTEM_TAG_PREFIXES,
    BackendScore,
    ObservableTerm,
    Preference,
    RecommendReply,
    RecommendRequest,
    Strategy,
)
from services.api.deps import Gateway
from services.api.errors import ApiError
from services.api.routes.backends import backend_rows_to_out
from services.api.schemas import BackendOut, SubmitRequest
from services.api.store import Principal

AER_BACKEND = "aer_simulator"


@dataclass(frozen=True)
class Plan:
    """Where and how an accepted request runs."""

    backend: str
    instance: str | None
    observables: list[list[ObservableTerm]] | None


def _names(names: Iterable[str], shown: int = 12) -> str:
    listed = sorted(names)
    if not listed:
        return "none yet (the poller lists them shortly after registration)"
    more = f" and {len(listed) - shown} more (GET /v1/backends)" if len(listed) > shown else ""
    return ", ".join(listed[:shown]) + more


def invalid(field: str, problem: str, code: str = "invalid_request") -> ApiError:
    return ApiError(
        422, code, f"{field}: {problem}", details=[{"field": field, "problem": problem}]
    )


def check_circuits(circuits: list[str]) -> list[CircuitSummary]:
    """Parse every circuit; the error names the circuit and the line."""
    summaries = []
    for index, source in enumerate(circuits):
        try:
            summaries.append(summarize(parse_circuit(source)))
        except CircuitError as exc:
            raise invalid(f"circuits[{index}]", str(exc), "invalid_circuit") from None
    return summaries


def check_observables(
    body: SubmitRequest, summaries: list[CircuitSummary]
) -> list[list[ObservableTerm]] | None:
    """One observable per circuit (a single one is applied to all), each as wide as its circuit."""
    if body.observables is None:
        if body.primitive == "estimator":
            raise invalid("observables", "the estimator needs one observable per circuit")
        return None
    if body.primitive == "sampler":
        raise invalid("observables", "the sampler takes no observables; use the estimator")
    observables = body.observables
    if len(observables) == 1 and len(summaries) > 1:
        observables = observables * len(summaries)
    if len(observables) != len(summaries):
        raise invalid(
            "observables",
            f"{len(body.observables)} observables for {len(summaries)} circuits; give one per "
            "circuit or one for all",
        )
    for index, (terms, summary) in enumerate(zip(observables, summaries, strict=True)):
        try:
            observable(terms, summary.num_qubits)
        except CircuitError as exc:
            raise invalid(f"observables[{index}]", str(exc), "invalid_observable") from None
    return observables


def check_request(body: SubmitRequest, max_shots: int, max_circuits: int) -> list[CircuitSummary]:
    """Checks that need no database: sizes, circuits, tags, shots, observables."""
    if len(body.circuits) > max_circuits:
        raise invalid("circuits", f"{len(body.circuits)} circuits; at most {max_circuits} per job")
    if body.shots is not None and body.shots > max_shots:
        raise invalid("shots", f"{body.shots} shots is out of range 1..{max_shots}")
    for tag in body.tags:
        if tag.startswith(SYSTEM_TAG_PREFIXES):
            raise invalid("tags", f"tag {tag!r} uses a prefix this system reserves")
    summaries = check_circuits(body.circuits)
    if body.primitive in ("sampler", "aer") and body.observables is None:
        for index, summary in enumerate(summaries):
            if not summary.has_measurements:
                raise invalid(
                    f"circuits[{index}]",
                    "the circuit measures nothing, so the sampler would return no counts; "
                    "add measurements or use the estimator",
                )
    return summaries


async def plan(
    body: SubmitRequest, who: Principal, gw: Gateway, summaries: list[CircuitSummary]
) -> Plan:
    """Pick the backend and instance, checking the circuit fits; raises ApiError if not."""
    observables = check_observables(body, summaries)
    if body.primitive == "aer":
        if body.backend not in ("auto", AER_BACKEND):
            raise invalid("backend", f"local Aer jobs run on {AER_BACKEND!r}, not {body.backend!r}")
        return Plan(AER_BACKEND, None, observables)
    width = max(s.num_qubits for s in summaries)
    backends = backend_rows_to_out(await gw.store.backends(who.user_id))
    if body.backend == "auto":
        # The widest circuit stands for the job: it limits the backends and dominates errors.
        widest = max(range(len(summaries)), key=lambda i: summaries[i].num_qubits)
        best = await recommend(
            gw,
            who,
            backends,
            width,
            top_n=1,
            preference=body.preference,
            circuit=body.circuits[widest],
            shots=(body.shots or DEFAULT_SHOTS) * len(body.circuits),
        )
        name = best[0].backend
    else:
        name = body.backend
    chosen = next((b for b in backends if b.name == name), None)
    if chosen is None:
        choices = _names(b.name for b in backends)
        raise invalid("backend", f"unknown backend {name!r}; your instances offer: {choices}",
                      "unknown_backend")  # fmt: skip
    if chosen.num_qubits is not None and width > chosen.num_qubits:
        raise invalid(
            "circuits",
            f"a circuit uses {width} qubits but {name} has {chosen.num_qubits}",
            "circuit_too_wide",
        )
    if chosen.max_shots is not None and body.shots is not None and body.shots > chosen.max_shots:
        raise invalid(
            "shots", f"{body.shots} shots is more than {name} allows ({chosen.max_shots})"
        )
    return Plan(name, pick_instance(chosen, body.instance), observables)


def pick_instance(backend: BackendOut, wanted: str | None) -> str:
    """The requested instance if it offers the backend; else a private one first."""
    if wanted is not None:
        if wanted not in backend.instances:
            raise invalid(
                "instance",
                f"instance {wanted!r} does not offer {backend.name}; these do: "
                f"{', '.join(backend.instances)}",
            )
        return wanted
    return (backend.private_instances or backend.instances)[0]


async def recommend(
    gw: Gateway,
    who: Principal,
    backends: list[BackendOut],
    num_qubits: int,
    *,
    top_n: int,
    preference: Preference = "balanced",
    circuit: str | None = None,
    strategy: Strategy = "esp",
    shots: int | None = None,
) -> list[BackendScore]:
    """The recommender's best backends of the user's that can run `num_qubits`.

    Without a circuit the recommender ranks for a GHZ circuit of `num_qubits` qubits. It
    answers within 80% of the RPC timeout with what it has scored by then.
    """
    candidates = [b.name for b in backends if b.operational and (b.num_qubits or 0) >= num_qubits]
    if not candidates:
        raise ApiError(
            422,
            "no_backend",
            f"none of your backends is operational with at least {num_qubits} qubits",
        )
    request = RecommendRequest(
        request_id=uuid.uuid4().hex,
        user_id=who.user_id,
        num_qubits=num_qubits,
        backends=candidates,
        top_n=top_n,
        preference=preference,
        strategy=strategy,
        circuit=circuit,
        shots=shots,
        deadline_s=gw.settings.rpc_timeout_s * 0.8,
    )
    try:
        reply = await gw.bus.request(request, RecommendReply, timeout_s=gw.settings.rpc_timeout_s)
    except RpcError as exc:
        raise ApiError(
            503, "recommender_unavailable", f"no recommendation available ({exc}); name a backend"
        ) from None
    if reply.error or not reply.recommendations:
        raise ApiError(
            503,
            "recommender_unavailable",
            f"the recommender found no backend: {reply.error or 'no candidates'}",
        )
    return reply.recommendations


INLINE_PARSE_CHARS = 20_000


async def checked(body: SubmitRequest, max_shots: int, max_circuits: int) -> list[CircuitSummary]:
    """`check_request`, off the event loop when the circuits are big enough to take CPU."""
    if sum(len(c) for c in body.circuits) <= INLINE_PARSE_CHARS:
        return check_request(body, max_shots, max_circuits)  # well under a millisecond
    return await anyio.to_thread.run_sync(check_request, body, max_shots, max_circuits)
