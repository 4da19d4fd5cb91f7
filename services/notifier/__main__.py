"""Wiring for the notifier service: `python -m services.notifier`.

A durable consumer (`notifier`) on every event; job final states, backend status and
calibration, and instance usage become ledger rows and sends (`handlers.py`); a loop in
each replica retries what is due.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from qjt.bus import EVT_STREAM, ConsumerSpec
from qjt.service import ServiceContext, run_service
from qjt.vault import Vault, VaultError
from services.notifier.handlers import Notifier
from services.notifier.store import NotifierStore

CATCH_UP = timedelta(minutes=15)


async def start(ctx: ServiceContext) -> None:
    assert ctx.pool is not None
    try:
        vault: Vault | None = Vault.from_settings(ctx.settings)
    except VaultError:
        vault = None  # channels cannot be read; each is reported failing when used
    notifier = Notifier(ctx.settings, NotifierStore(ctx.pool), vault)
    spec = ConsumerSpec(
        stream=EVT_STREAM,
        durable="notifier",
        filter_subject="qjt.evt.>",
        ack_wait_s=ctx.settings.ack_wait_s,
        batch=64,
        # A notifier deployed for the first time tells of the last few minutes, not of
        # every job in the stream's history.
        start_at=datetime.now(UTC) - CATCH_UP,
    )
    ctx.run_consumer(await ctx.bus.consumer(spec, notifier.handle))
    ctx.spawn(notifier.retry_forever(ctx.stopping), name="notifier-retries")


if __name__ == "__main__":
    run_service("notifier", start, needs_db=True)
