"""A service on SIGTERM finishes and acks the batch in hand, then exits cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from qjt.bus import EVT_STREAM, Bus
from qjt.devstack import NatsServer, free_port
from tests.conftest import wait_for
from tests.helpers.factories import status_event
from tests.helpers.slow_service import SPEC


async def test_sigterm_drains_the_batch_in_hand_and_exits_zero(
    bus: Bus, nats_server: NatsServer, tmp_path: Path
) -> None:
    events = [status_event(n) for n in range(30)]
    await bus.publish_many(events)
    handled = tmp_path / "handled.txt"
    handled.touch()
    port = free_port()
    env = {**os.environ, "QJT_NATS_URL": nats_server.url, "QJT_HTTP_PORT": str(port)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.helpers.slow_service", str(handled)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        await wait_for(
            lambda: len(handled.read_text().splitlines()) >= 3, timeout_s=30, what="work to start"
        )
        proc.send_signal(signal.SIGTERM)  # mid-batch: 10 fetched, about 3 done
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    logs = proc.stderr.read() if proc.stderr else ""
    done = handled.read_text().splitlines()

    assert len(done) == 10, "the whole batch in hand is finished, and no new batch is fetched"
    assert done == [e.id for e in events[:10]]
    info = await bus.js.consumer_info(EVT_STREAM, SPEC.durable)
    assert info.num_ack_pending == 0, "the finished batch was acked before exit"
    assert info.num_pending == 20, "the rest waits for the next replica"
    assert '"msg": "slow stopping: draining in-flight work"' in logs
    assert '"msg": "slow stopped"' in logs
