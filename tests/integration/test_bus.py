"""The bus against a real nats-server: delivery, dedupe, crashes, poison, restarts."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from qjt.bus import (
    CMD_STREAM,
    DLQ_STREAM,
    EVT_STREAM,
    Bus,
    ConsumerSpec,
    RpcError,
    TransientError,
    one_by_one,
)
from qjt.contracts import (
    Message,
    PredictReply,
    PredictRequest,
    RecommendReply,
    RecommendRequest,
    SubmitJob,
)
from qjt.devstack import NatsServer
from tests.conftest import make_settings, wait_for
from tests.helpers.consumer_process import SPEC as KILLTEST_SPEC
from tests.helpers.factories import status_event

JOB_EVENTS = ConsumerSpec(
    stream=EVT_STREAM,
    durable="test-recorder",
    filter_subject="qjt.evt.job.>",
    max_deliver=3,
    ack_wait_s=2.0,
    batch=50,
    backoff_s=0.05,
)


async def start_collecting(
    bus: Bus, spec: ConsumerSpec = JOB_EVENTS
) -> tuple[list[str], asyncio.Task[None]]:
    received: list[str] = []

    async def handle(message: Message) -> None:
        received.append(message.id)

    consumer = await bus.consumer(spec, one_by_one(handle))
    return received, asyncio.create_task(consumer.run())


async def stop(bus: Bus, task: asyncio.Task[None]) -> None:
    bus.stop_consumers()
    await asyncio.wait_for(task, timeout=10)


async def test_published_events_reach_a_durable_consumer_in_order(bus: Bus) -> None:
    events = [status_event(n) for n in range(20)]
    for event in events:
        await bus.publish(event)

    received, task = await start_collecting(bus)
    await wait_for(lambda: len(received) == 20, what="20 events")
    await stop(bus, task)

    assert received == [e.id for e in events]
    info = await bus.js.consumer_info(EVT_STREAM, JOB_EVENTS.durable)
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_same_msg_id_published_twice_is_stored_once(bus: Bus) -> None:
    event = status_event(1)
    first = await bus.publish(event)
    second = await bus.publish(event)  # a retry after, say, a lost ack

    assert second.duplicate is True and first.duplicate is not True
    stream = await bus.js.stream_info(EVT_STREAM)
    assert stream.state.messages == 1

    batch = [status_event(n) for n in range(10)]
    await bus.publish_many(batch + batch)
    stream = await bus.js.stream_info(EVT_STREAM)
    assert stream.state.messages == 10  # event 1 again, plus 2..9


async def test_consumer_killed_mid_batch_loses_nothing(
    bus: Bus, nats_server: NatsServer, tmp_path: Path
) -> None:
    events = [status_event(n) for n in range(40)]
    await bus.publish_many(events)
    handled_file = tmp_path / "handled.txt"
    handled_file.touch()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.helpers.consumer_process",
            nats_server.url,
            str(handled_file),
            "0.05",
        ],
    )
    try:
        await wait_for(
            lambda: len(handled_file.read_text().splitlines()) >= 10,
            timeout_s=60,
            what="the consumer process to handle 10 messages",
        )
    finally:
        proc.kill()  # SIGKILL: no drain, no ack of the batch in hand
        proc.wait()
    handled_before_kill = handled_file.read_text().splitlines()
    assert 10 <= len(handled_before_kill) < 40, "the kill must land mid-batch"

    received, task = await start_collecting(bus, KILLTEST_SPEC)
    await wait_for(lambda: set(received) >= {e.id for e in events}, timeout_s=30, what="redelivery")
    await stop(bus, task)

    # Nothing was acked by the killed consumer, so every event comes again.
    assert sorted(set(received)) == sorted(e.id for e in events)


async def test_poison_message_goes_to_dead_letter_after_max_deliver(bus: Bus) -> None:
    poison = status_event(7)
    attempts: list[str] = []
    handled: list[str] = []

    async def handle(message: Message) -> None:
        attempts.append(message.id)
        if message.id == poison.id:
            raise ValueError("backend name rejected by database constraint")
        handled.append(message.id)

    events = [status_event(n) for n in range(5, 10)]
    await bus.publish_many(events)
    consumer = await bus.consumer(JOB_EVENTS, one_by_one(handle))
    task = asyncio.create_task(consumer.run())

    dlq = await bus.js.pull_subscribe("qjt.dlq.>", stream=DLQ_STREAM)
    dead = (await dlq.fetch(1, timeout=30))[0]
    await stop(bus, task)

    assert dead.subject == f"qjt.dlq.{poison.subject}"
    assert json.loads(dead.data)["id"] == poison.id
    assert dead.headers is not None
    assert dead.headers["Qjt-Deliveries"] == str(JOB_EVENTS.max_deliver)
    assert "backend name rejected" in dead.headers["Qjt-Error"]
    # Delivered max_deliver times (the first one also tried inside its batch), then no more.
    assert attempts.count(poison.id) == JOB_EVENTS.max_deliver + 1
    assert set(handled) == {e.id for e in events} - {poison.id}
    info = await bus.js.consumer_info(EVT_STREAM, JOB_EVENTS.durable)
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_unreadable_message_is_dead_lettered_at_once_with_the_reason(bus: Bus) -> None:
    future_event = status_event(1).model_dump(mode="json") | {"version": 99}
    await bus.publish_raw("qjt.evt.job.status", json.dumps(future_event).encode(), "v99-test")
    received, task = await start_collecting(bus)

    dlq = await bus.js.pull_subscribe("qjt.dlq.>", stream=DLQ_STREAM)
    dead = (await dlq.fetch(1, timeout=15))[0]
    await stop(bus, task)

    assert received == []
    assert dead.headers is not None
    assert "version 99 is not supported" in dead.headers["Qjt-Error"]
    assert dead.headers["Qjt-Deliveries"] == "1"


async def test_nats_restart_mid_stream_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats").start()
    settings = make_settings(nats_url=server.url)
    publisher = await Bus.connect(settings, name="publisher")
    await publisher.ensure_streams()
    consumer_bus = await Bus.connect(settings, name="consumer")
    try:
        received, task = await start_collecting(consumer_bus)
        events = [status_event(n) for n in range(300)]

        async def publish_all() -> None:
            for event in events:
                await publisher.publish(event)

        publishing = asyncio.create_task(publish_all())
        await wait_for(lambda: len(received) >= 100, what="100 events before the restart")
        assert not publishing.done(), "the restart must land while events are being published"
        await asyncio.to_thread(server.kill)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(server.start)  # same port, same JetStream store

        await asyncio.wait_for(publishing, timeout=90)
        await wait_for(lambda: len(set(received)) == 300, timeout_s=60, what="all 300 events")
        await stop(consumer_bus, task)

        assert set(received) == {e.id for e in events}
        stream = await publisher.js.stream_info(EVT_STREAM)
        assert stream.state.messages == 300
    finally:
        await publisher.close()
        await consumer_bus.close()
        server.stop()


async def test_work_queue_command_is_consumed_once_and_removed(bus: Bus) -> None:
    command = SubmitJob(
        job_id="job-1",
        user_id="user-a",
        primitive="sampler",
        circuits=["OPENQASM 2.0;"],
        backend="fake_kyiv",
    )
    await bus.publish(command)
    spec = ConsumerSpec(
        stream=CMD_STREAM, durable="submitter", filter_subject="qjt.cmd.job.>", batch=10
    )
    got: list[Message] = []

    async def handle(message: Message) -> None:
        got.append(message)

    consumer = await bus.consumer(spec, one_by_one(handle))
    task = asyncio.create_task(consumer.run())
    await wait_for(lambda: len(got) == 1, what="the submit command")
    await stop(bus, task)

    assert got == [command]
    stream = await bus.js.stream_info(CMD_STREAM)
    assert stream.state.messages == 0  # work queue: removed once acked


async def test_request_reply_load_shares_across_a_queue_group(bus: Bus) -> None:
    answered_by: list[str] = []

    def replier(name: str):
        async def answer(message: Message) -> Message:
            assert isinstance(message, PredictRequest)
            answered_by.append(name)
            return PredictReply(
                request_id=message.request_id, backend=message.backend, predicted_wait_s=42.0
            )

        return answer

    await bus.serve("qjt.rpc.predict", "recommender", replier("a"))
    await bus.serve("qjt.rpc.predict", "recommender", replier("b"))
    for n in range(20):
        reply = await bus.request(
            PredictRequest(request_id=f"r{n}", backend="fake_kyiv"), PredictReply
        )
        assert reply.predicted_wait_s == 42.0 and reply.request_id == f"r{n}"
    assert len(answered_by) == 20  # each request answered once, by one member


async def test_request_without_a_server_fails_clearly(bus: Bus) -> None:
    with pytest.raises(RpcError, match=r"nothing serves qjt\.rpc\.recommend|no reply"):
        await bus.request(
            RecommendRequest(request_id="r1", user_id="u"), RecommendReply, timeout_s=1.0
        )


async def test_dependency_outage_retries_the_batch_without_dead_lettering(bus: Bus) -> None:
    events = [status_event(n) for n in range(5)]
    await bus.publish_many(events)
    calls: list[int] = []
    stored: list[str] = []

    async def handle(batch: list[Message]) -> None:
        calls.append(len(batch))
        if len(calls) <= 4:  # the database is down for a while (longer than max_deliver)
            raise TransientError("connection refused")
        stored.extend(m.id for m in batch)

    consumer = await bus.consumer(JOB_EVENTS, handle)
    task = asyncio.create_task(consumer.run())
    await wait_for(lambda: len(stored) == 5, timeout_s=30, what="the batch after the outage")
    await stop(bus, task)

    assert stored == [e.id for e in events]
    assert calls == [5, 5, 5, 5, 5]  # the same batch, retried whole
    info = await bus.js.consumer_info(EVT_STREAM, JOB_EVENTS.durable)
    assert info.num_ack_pending == 0 and info.num_redelivered == 0
    dlq = await bus.js.stream_info(DLQ_STREAM)
    assert dlq.state.messages == 0


async def test_a_consumer_with_a_start_time_skips_older_history_and_keeps_its_place(
    bus: Bus,
) -> None:
    old = [status_event(n) for n in range(5)]
    for event in old:
        await bus.publish(event)
    await asyncio.sleep(0.05)
    spec = dataclasses.replace(JOB_EVENTS, durable="late", start_at=datetime.now(UTC))
    new = [status_event(n) for n in range(5, 8)]
    for event in new:
        await bus.publish(event)
    received, task = await start_collecting(bus, spec)
    await wait_for(lambda: len(received) == 3, what="the three newer events")
    await stop(bus, task)
    assert received == [e.id for e in new]
    # Created again (a restart): it keeps its place instead of starting over.
    await bus.publish(status_event(8))
    received, task = await start_collecting(bus, spec)
    await wait_for(lambda: len(received) == 1, what="the event after the restart")
    await stop(bus, task)
    assert received == [status_event(8).id]
