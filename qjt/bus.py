"""The one NATS helper every service uses: connect, streams, publish, consume, RPC.

- Streams are created (or updated) idempotently by whoever needs them.
- Publishing waits for JetStream's ack and sets `Nats-Msg-Id` from the message's
  deterministic id, so a retry after a timeout or a NATS restart is stored once.
- Consuming is a durable pull consumer with explicit acks. A handler that raises gets
  the message nak'ed with backoff; after `max_deliver` deliveries the message is copied
  to `qjt.dlq.<subject>` with the error and then acked. A message this build cannot
  parse goes to the dead-letter subject at once (retrying cannot fix it).
- `stop()` lets the current batch finish (acks included) before the loop returns, so
  SIGTERM loses nothing; SIGKILL loses nothing either, since unacked messages are
  redelivered after `ack_wait`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter as Counter_
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from prometheus_client import Counter, Gauge, Histogram

from qjt.config import Settings
from qjt.contracts import ContractError, Message, parse_message

log = logging.getLogger("qjt.bus")

CMD_STREAM = "QJT_CMD"
EVT_STREAM = "QJT_EVT"
DLQ_STREAM = "QJT_DLQ"
DLQ_PREFIX = "qjt.dlq."

PUBLISHED = Counter("qjt_bus_published_total", "Messages published and acked", ["type"])
PUBLISH_RETRIES = Counter("qjt_bus_publish_retries_total", "Publishes retried", ["type"])
CONSUMED = Counter("qjt_bus_consumed_total", "Messages handled and acked", ["durable"])
NAKED = Counter("qjt_bus_naked_total", "Messages nak'ed for redelivery", ["durable"])
DEAD_LETTERED = Counter("qjt_bus_dead_lettered_total", "Messages sent to qjt.dlq", ["durable"])
OUTAGE_RETRIES = Counter(
    "qjt_bus_outage_retries_total", "Batches retried because a dependency was down", ["durable"]
)
PENDING = Gauge(
    "qjt_bus_consumer_pending",
    "Messages waiting for a durable consumer (not yet delivered, or delivered and unacked)",
    ["durable"],
)
LAG_EVERY_S = 5.0
HANDLE_SECONDS = Histogram(
    "qjt_bus_handle_seconds", "Time to handle one fetched batch", ["durable"]
)

# Errors that mean "NATS is not there right now": retry, do not give up.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    asyncio.TimeoutError,
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
)
LAG_ERRORS: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, nats.js.errors.APIError)

ACK_TIMEOUT_S = 5.0

# A publish_async ack that failed for these is retried with a plain publish.
RETRYABLE_PUBLISH_ERRORS: tuple[type[BaseException], ...] = (
    *TRANSIENT_ERRORS,
    nats.js.errors.APIError,
)

M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class StreamSpec:
    """A JetStream stream this system needs."""

    name: str
    subjects: list[str]
    retention: api.RetentionPolicy
    max_age_s: float | None = None


def stream_specs(settings: Settings) -> list[StreamSpec]:
    """The streams in DESIGN.md: commands (work queue), events, dead letters."""
    days = settings.event_retention_days * 86_400
    return [
        StreamSpec(CMD_STREAM, ["qjt.cmd.>"], api.RetentionPolicy.WORK_QUEUE),
        StreamSpec(EVT_STREAM, ["qjt.evt.>"], api.RetentionPolicy.LIMITS, max_age_s=days),
        StreamSpec(DLQ_STREAM, [f"{DLQ_PREFIX}>"], api.RetentionPolicy.LIMITS, max_age_s=days),
    ]


@dataclass(frozen=True)
class ConsumerSpec:
    """A durable pull consumer: which stream, which subjects, how redelivery behaves."""

    stream: str
    durable: str
    filter_subject: str
    max_deliver: int = 5
    ack_wait_s: float = 30.0
    batch: int = 256
    fetch_timeout_s: float = 1.0
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0
    in_flight: int = 1  # batches handled at once (see Consumer.run)
    # Where a new durable starts: None from the stream's first message; a moment for a
    # consumer that must not act on old history (it only counts when first created).
    start_at: datetime | None = None

    def nak_delay(self, deliveries: int) -> float:
        """Exponential backoff for the next redelivery, in seconds."""
        return float(min(self.backoff_s * 2 ** max(deliveries - 1, 0), self.backoff_max_s))


@dataclass
class Delivery:
    """A decoded message plus the NATS message it came in (for ack/nak)."""

    message: Message
    raw: Msg

    @property
    def deliveries(self) -> int:
        return int(self.raw.metadata.num_delivered)


BatchHandler = Callable[[list[Message]], Awaitable[None]]
MessageHandler = Callable[[Message], Awaitable[None]]


def one_by_one(handler: MessageHandler) -> BatchHandler:
    """Adapt a per-message handler to the batch interface."""

    async def handle(batch: list[Message]) -> None:
        for message in batch:
            await handler(message)

    return handle


class Bus:
    """A connected NATS client with JetStream, plus this system's conventions."""

    def __init__(self, nc: NATS, settings: Settings) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream(timeout=5)
        self.settings = settings
        self._consumers: list[Consumer] = []
        self._closing: list[bool] = []
        self._answering: set[asyncio.Task[None]] = set()

    @classmethod
    async def connect(cls, settings: Settings, name: str | None = None) -> Bus:
        """Connect with unlimited reconnects (a NATS restart is survived, not fatal)."""
        servers = [s.strip() for s in settings.nats_url.split(",") if s.strip()]

        async def on_error(exc: Exception) -> None:
            log.warning("nats error: %s", exc)

        closing: list[bool] = []  # set by close(): a disconnect then is expected

        async def on_disconnect() -> None:
            if not closing:
                log.warning("nats disconnected; reconnecting")

        async def on_reconnect() -> None:
            log.info("nats reconnected")

        nc = await nats.connect(
            servers=servers,
            name=name or settings.service_name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            connect_timeout=5,
            allow_reconnect=True,
            error_cb=on_error,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
            drain_timeout=10,
        )
        bus = cls(nc, settings)
        bus._closing = closing
        return bus

    @property
    def connected(self) -> bool:
        return bool(self.nc.is_connected)

    async def ensure_streams(self) -> None:
        """Create or update every stream this system uses (safe to call from every replica)."""
        for spec in stream_specs(self.settings):
            config = api.StreamConfig(
                name=spec.name,
                subjects=spec.subjects,
                retention=spec.retention,
                storage=api.StorageType.FILE,
                max_age=spec.max_age_s,
                duplicate_window=self.settings.dedupe_window_s,
                num_replicas=self.settings.stream_replicas,
            )
            try:
                await self.js.add_stream(config)
            except nats.js.errors.BadRequestError:
                # Exists with a different config: update what may be updated.
                await self.js.update_stream(config)

    # -- publishing -------------------------------------------------------

    async def publish(self, message: Message, *, deadline_s: float = 60.0) -> api.PubAck:
        """Publish and wait for JetStream's ack, retrying through NATS outages.

        The retry reuses the message's `Nats-Msg-Id`, so a publish that reached the
        server before the connection dropped is not stored twice.
        """
        return await self.publish_raw(
            message.subject, message.to_bytes(), message.id, message.type, deadline_s=deadline_s
        )

    async def publish_raw(
        self,
        subject: str,
        payload: bytes,
        msg_id: str,
        kind: str = "raw",
        *,
        headers: dict[str, str] | None = None,
        deadline_s: float = 60.0,
    ) -> api.PubAck:
        """Publish bytes with a dedupe id; retried like `publish`."""
        all_headers = {"Nats-Msg-Id": msg_id, **(headers or {})}
        give_up_at = time.monotonic() + deadline_s
        attempt = 0
        while True:
            try:
                ack = await self.js.publish(subject, payload, headers=all_headers, timeout=2.0)
            except TRANSIENT_ERRORS as exc:
                attempt += 1
                if time.monotonic() >= give_up_at:
                    raise
                PUBLISH_RETRIES.labels(kind).inc()
                log.warning(
                    "publish to %s failed (%s); retry %d", subject, type(exc).__name__, attempt
                )
                await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
                continue
            PUBLISHED.labels(kind).inc()
            return ack

    async def publish_many(
        self, messages: Iterable[Message], *, window: int = 1000, deadline_s: float = 60.0
    ) -> int:
        """Publish many messages with up to `window` acks outstanding; returns how many.

        Any message whose ack fails is republished one at a time (same `Nats-Msg-Id`),
        so the call returns only when every message is stored.
        """
        pending: list[tuple[Message, asyncio.Future[api.PubAck]]] = []
        count = 0

        async def settle() -> None:
            stored: Counter_[str] = Counter_()
            for message, future in pending:
                try:
                    # An ack lost in a reconnect never arrives: bound the wait, then
                    # republish (same Nats-Msg-Id, so a stored message is not duplicated).
                    await asyncio.wait_for(future, timeout=ACK_TIMEOUT_S)
                    stored[message.type] += 1
                except RETRYABLE_PUBLISH_ERRORS:
                    await self.publish(message, deadline_s=deadline_s)
            for kind, n in stored.items():
                PUBLISHED.labels(kind).inc(n)
            pending.clear()

        for message in messages:
            try:
                future = await self.js.publish_async(
                    message.subject, message.to_bytes(), headers={"Nats-Msg-Id": message.id}
                )
            except TRANSIENT_ERRORS:
                await settle()
                await self.publish(message, deadline_s=deadline_s)
            else:
                pending.append((message, future))
            count += 1
            if len(pending) >= window:
                await settle()
        await settle()
        return count

    # -- consuming --------------------------------------------------------

    def consumer_spec(self, stream: str, durable: str, filter_subject: str) -> ConsumerSpec:
        """A consumer spec with redelivery limits from settings."""
        return ConsumerSpec(
            stream=stream,
            durable=durable,
            filter_subject=filter_subject,
            max_deliver=self.settings.max_deliver,
            ack_wait_s=self.settings.ack_wait_s,
            batch=self.settings.fetch_batch,
        )

    async def consumer(self, spec: ConsumerSpec, handler: BatchHandler) -> Consumer:
        """Create (or update) the durable consumer and bind to it; call `run()` to start."""
        config = api.ConsumerConfig(
            durable_name=spec.durable,
            name=spec.durable,
            filter_subject=spec.filter_subject,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=spec.ack_wait_s,
            # The server's bound is a safety net for a message that crashes its consumer
            # process every time; the normal bound (and the dead-letter copy) is ours.
            max_deliver=spec.max_deliver * 2,
            max_ack_pending=max(spec.batch * 4, 1000),
        )
        existing = await self._existing(spec)
        if existing is not None:  # an update must keep where the durable started
            config.deliver_policy = existing.config.deliver_policy
            config.opt_start_time = existing.config.opt_start_time
        elif spec.start_at is not None:
            config.deliver_policy = api.DeliverPolicy.BY_START_TIME
            config.opt_start_time = spec.start_at
        await self.js.add_consumer(spec.stream, config=config)
        sub = await self.js.pull_subscribe_bind(durable=spec.durable, stream=spec.stream)
        consumer = Consumer(self, spec, sub, handler)
        self._consumers.append(consumer)
        return consumer

    async def _existing(self, spec: ConsumerSpec) -> api.ConsumerInfo | None:
        try:
            info: api.ConsumerInfo = await self.js.consumer_info(spec.stream, spec.durable)
        except nats.js.errors.NotFoundError:
            return None
        return info

    # -- request / reply --------------------------------------------------

    async def serve(
        self,
        subject: str,
        queue: str,
        handler: Callable[[Message], Awaitable[Message]],
    ) -> None:
        """Answer requests on `subject`, load-shared across replicas in `queue`."""

        async def on_request(msg: Msg) -> None:
            # Each request in its own task: one slow answer must not hold up the others.
            task = asyncio.create_task(answer(msg))
            self._answering.add(task)
            task.add_done_callback(self._answering.discard)

        async def answer(msg: Msg) -> None:
            try:
                request = parse_message(msg.data)
                reply = await handler(request)
                await msg.respond(reply.to_bytes())
            except ContractError as exc:
                await msg.respond(_error_reply(str(exc)))
            except Exception as exc:  # loop edge: answer instead of leaving the caller hanging
                log.exception("request on %s failed", subject)
                await msg.respond(_error_reply(f"{type(exc).__name__}: {exc}"))

        await self.nc.subscribe(subject, queue=queue, cb=on_request)

    async def request(self, message: Message, reply_type: type[M], timeout_s: float = 5.0) -> M:
        """Send a request and decode the reply; raises `RpcError` on a timeout or error."""
        try:
            msg = await self.nc.request(message.subject, message.to_bytes(), timeout=timeout_s)
        except (TimeoutError, nats.errors.TimeoutError) as exc:
            raise RpcError(f"no reply on {message.subject} within {timeout_s} s") from exc
        except nats.errors.NoRespondersError as exc:
            raise RpcError(f"nothing serves {message.subject}") from exc
        if msg.headers and msg.headers.get("Qjt-Error"):
            raise RpcError(msg.headers["Qjt-Error"])
        try:
            body = json.loads(msg.data)
        except ValueError as exc:
            raise RpcError(f"reply on {message.subject} is not JSON") from exc
        if isinstance(body, dict) and set(body) == {"error"}:
            raise RpcError(str(body["error"]))
        reply = parse_message(body)
        if not isinstance(reply, reply_type):
            raise RpcError(f"expected {reply_type.__name__}, got {type(reply).__name__}")
        return reply

    # -- shutdown ---------------------------------------------------------

    def stop_consumers(self) -> None:
        """Ask every consumer loop to return after the batch in hand."""
        for consumer in self._consumers:
            consumer.stop()

    async def close(self) -> None:
        """Stop consumers (finishing their current batch), then drain the connection."""
        self._closing.append(True)
        self.stop_consumers()
        if self._answering:  # requests in hand get their answers before the connection drains
            await asyncio.wait(self._answering, timeout=self.settings.shutdown_grace_s)
        for consumer in self._consumers:
            await consumer.wait_stopped()
            # A pull subscription keeps fetch status replies nobody reads, which would
            # hold nc.drain() until its timeout; nothing is lost (unacked = redelivered).
            with contextlib.suppress(*TRANSIENT_ERRORS, nats.errors.BadSubscriptionError):
                await consumer.sub.unsubscribe()
        if self.nc.is_connected:
            try:
                await self.nc.drain()
            except (nats.errors.ConnectionClosedError, nats.errors.FlushTimeoutError):
                await self.nc.close()
        elif not self.nc.is_closed:
            # NATS is away: nothing to drain into; unacked messages are redelivered.
            await self.nc.close()


def dlq_subject(subject: str) -> str:
    """Where a message from `subject` ends if it cannot be handled."""
    return DLQ_PREFIX + subject


class RpcError(RuntimeError):
    """A request got no reply, or the replier reported an error."""


class TransientError(Exception):
    """A handler's dependency (e.g. PostgreSQL) is down: retry the same batch later.

    Unlike any other exception this does not count against the messages: the consumer
    keeps the batch unacked (telling JetStream it is still in progress), backs off, and
    tries again until it succeeds or the service stops, so an outage never sends good
    messages to the dead-letter subject.
    """


def _error_reply(text: str) -> bytes:
    return json.dumps({"error": text}).encode()


@dataclass
class Consumer:
    """The fetch → handle → ack loop of one durable pull consumer."""

    bus: Bus
    spec: ConsumerSpec
    sub: JetStreamContext.PullSubscription
    handler: BatchHandler
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _stopped: asyncio.Event = field(default_factory=asyncio.Event)
    _running: bool = False
    handled: int = 0

    def __post_init__(self) -> None:
        self._consumed = CONSUMED.labels(self.spec.durable)
        self._lag_at = 0.0

    def stop(self) -> None:
        """Ask the loop to return after the batch in hand."""
        self._stop.set()

    async def wait_stopped(self) -> None:
        if self._stopped.is_set() or not self._running:
            return
        await self._stopped.wait()

    async def run(self) -> None:
        """Fetch and handle batches until `stop()`; survives NATS restarts.

        With `spec.in_flight` above 1 the next batch is fetched and decoded while earlier
        ones are still being handled (for handlers that wait on I/O, such as a database
        commit); each batch is still acked only after its own handler returned.
        """
        self._running = True
        busy: set[asyncio.Task[None]] = set()
        try:
            while not self._stop.is_set():
                if len(busy) >= self.spec.in_flight:
                    await asyncio.wait(busy, return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    raw = await self.sub.fetch(self.spec.batch, timeout=self.spec.fetch_timeout_s)
                except TRANSIENT_ERRORS:
                    continue
                except nats.js.errors.APIError as exc:
                    log.warning("fetch on %s failed: %s", self.spec.durable, exc)
                    await asyncio.sleep(0.5)
                    continue
                await self._report_lag()
                if raw:
                    task = asyncio.create_task(self._timed_handle(raw))
                    busy.add(task)
                    task.add_done_callback(busy.discard)
        finally:
            if busy:
                await asyncio.gather(*busy, return_exceptions=True)
            self._running = False
            self._stopped.set()

    async def _report_lag(self) -> None:
        """Every few seconds, how far behind this durable consumer is (for alerts)."""
        now = time.monotonic()
        if now - self._lag_at < LAG_EVERY_S:
            return
        self._lag_at = now
        try:
            info = await self.sub.consumer_info()
        except LAG_ERRORS:
            return
        waiting = (info.num_pending or 0) + (info.num_ack_pending or 0)
        PENDING.labels(self.spec.durable).set(waiting)

    async def _timed_handle(self, raw: Sequence[Msg]) -> None:
        with HANDLE_SECONDS.labels(self.spec.durable).time():
            await self._handle(raw)

    async def _handle(self, raw: Sequence[Msg]) -> None:
        messages: list[Message] = []
        readable: list[Msg] = []
        for msg in raw:
            try:
                messages.append(parse_message(msg.data))
            except ContractError as exc:
                await self._dead_letter(msg, f"unreadable message: {exc}")
            else:
                readable.append(msg)
        if not messages:
            return
        try:
            if not await self._call_through_outages(messages, readable):
                return  # stopping during an outage: unacked messages are redelivered
        except Exception as exc:  # loop edge: isolate the failing message(s)
            if len(messages) == 1:
                await self._failed(Delivery(messages[0], readable[0]), exc)
                return
            log.warning(
                "batch of %d on %s failed (%s); handling one by one",
                len(messages),
                self.spec.durable,
                exc,
            )
            for message, msg in zip(messages, readable, strict=True):
                await self._handle_one(Delivery(message, msg))
            return
        await self._ack(readable)

    async def _call_through_outages(self, messages: list[Message], raw: Sequence[Msg]) -> bool:
        """Call the handler, waiting out `TransientError`s; False if stopped meanwhile."""
        delay = self.spec.backoff_s
        while True:
            try:
                await self.handler(messages)
                return True
            except TransientError as exc:
                if self._stop.is_set():
                    return False
                OUTAGE_RETRIES.labels(self.spec.durable).inc()
                log.warning(
                    "%s: dependency unavailable (%s); retrying %d messages in %.1f s",
                    self.spec.durable,
                    exc,
                    len(messages),
                    delay,
                )
                for msg in raw:
                    with contextlib.suppress(*TRANSIENT_ERRORS):
                        await msg.in_progress()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.spec.backoff_max_s / 6)

    async def _handle_one(self, delivery: Delivery) -> None:
        try:
            if not await self._call_through_outages([delivery.message], [delivery.raw]):
                return
        except Exception as exc:  # loop edge: nak or dead-letter this one message
            await self._failed(delivery, exc)
        else:
            await self._ack([delivery.raw])

    async def _ack(self, msgs: Sequence[Msg]) -> None:
        acked = 0
        for msg in msgs:
            try:
                await msg.ack()
            except TRANSIENT_ERRORS:
                # Not acked: it is redelivered after ack_wait and handled idempotently.
                log.warning("ack on %s lost; message will be redelivered", self.spec.durable)
            else:
                acked += 1
        self.handled += acked
        self._consumed.inc(acked)

    async def _failed(self, delivery: Delivery, exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        if delivery.deliveries >= self.spec.max_deliver:
            await self._dead_letter(delivery.raw, reason)
            return
        delay = self.spec.nak_delay(delivery.deliveries)
        log.warning(
            "handling %s on %s failed (delivery %d/%d, retry in %.1f s): %s",
            delivery.message.id,
            self.spec.durable,
            delivery.deliveries,
            self.spec.max_deliver,
            delay,
            reason,
        )
        try:
            await delivery.raw.nak(delay=delay)
            NAKED.labels(self.spec.durable).inc()
        except TRANSIENT_ERRORS:
            pass  # redelivered after ack_wait anyway

    async def _dead_letter(self, msg: Msg, reason: str) -> None:
        meta = msg.metadata
        headers = {
            "Qjt-Error": reason[:2000],
            "Qjt-Original-Subject": msg.subject,
            "Qjt-Consumer": self.spec.durable,
            "Qjt-Deliveries": str(meta.num_delivered),
        }
        msg_id = f"dlq:{meta.stream}:{meta.sequence.stream}"
        log.error(
            "dead-lettering %s seq %s from %s: %s",
            msg.subject,
            meta.sequence.stream,
            self.spec.durable,
            reason,
        )
        await self.bus.publish_raw(
            dlq_subject(msg.subject), msg.data, msg_id, "dlq", headers=headers
        )
        DEAD_LETTERED.labels(self.spec.durable).inc()
        await self._ack([msg])
