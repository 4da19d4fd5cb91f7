"""Sharing the accounts between poller replicas with NATS KV leases.

Each replica keeps a heartbeat key and claims poll targets (credential × instance) with
`create`, which succeeds for one replica only. It renews what it holds every few seconds
(compare-and-set on the revision) and claims at most its fair share (targets ÷ live
replicas, rounded up), releasing extras so a new replica gets work. Backends
are leased too (first come among the replicas that see them), so a backend several
replicas' accounts can see is still polled once. Keys live `LEASE_TTL_S` after their
last renewal, so a dead replica's targets are claimed by the
others within TTL + one renewal interval (under 30 s).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
from dataclasses import dataclass, field

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

log = logging.getLogger("qjt.poller.leases")

BUCKET = "qjt_poller_leases"
LEASE_TTL_S = 15.0
RENEW_S = 5.0


def lease_key(target: str) -> str:
    """A KV-safe key for a target (CRNs hold characters KV keys may not)."""
    return "target." + hashlib.sha256(target.encode()).hexdigest()[:24]


@dataclass
class Leases:
    """This replica's view of who polls what."""

    kv: KeyValue
    replica: str
    held: dict[str, int] = field(default_factory=dict)  # target → revision of our lease
    backends: dict[str, int] = field(default_factory=dict)  # backend → revision

    @classmethod
    async def open(cls, js: JetStreamContext, replica: str, replicas: int = 1) -> Leases:
        try:
            kv = await js.key_value(BUCKET)
        except nats.js.errors.BucketNotFoundError:
            kv = await js.create_key_value(
                bucket=BUCKET, ttl=LEASE_TTL_S, history=1, replicas=replicas
            )
        return cls(kv, replica)

    async def live_replicas(self) -> int:
        await self.kv.put(f"replica.{self.replica}", b"alive")
        try:
            # Unfiltered: nats-py's filtered keys() finds nothing on this server.
            keys = await self.kv.keys()
        except nats.js.errors.NoKeysError:
            return 1
        return max(1, sum(1 for key in keys if key.startswith("replica.")))

    async def claim(self, targets: list[str]) -> set[str]:
        """Renew held leases, claim free targets up to a fair share; returns targets held."""
        share = math.ceil(len(targets) / await self.live_replicas()) if targets else 0
        for target in list(self.held):
            if target not in targets:
                await self._release(target)
                continue
            try:
                self.held[target] = await self.kv.update(
                    lease_key(target), self.replica.encode(), last=self.held[target]
                )
            except nats.js.errors.KeyWrongLastSequenceError:
                log.warning("lost the lease on %s", target)
                self.held.pop(target)
        for target in sorted(set(self.held) - set(targets)):
            self.held.pop(target, None)
        while len(self.held) > share:
            await self._release(sorted(self.held)[-1])
        for target in targets:
            if len(self.held) >= share:
                break
            if target in self.held:
                continue
            try:
                self.held[target] = await self.kv.create(lease_key(target), self.replica.encode())
            except nats.js.errors.KeyWrongLastSequenceError:
                continue  # another replica holds it
        return set(self.held)

    async def claim_backends(self, seen: set[str]) -> set[str]:
        """Backends this replica polls: first come among replicas that see them, renewed."""
        for name in list(self.backends):
            key = f"backend.{name}"
            if name not in seen:
                with contextlib.suppress(nats.js.errors.Error):
                    await self.kv.delete(key, last=self.backends.pop(name))
                continue
            try:
                self.backends[name] = await self.kv.update(
                    key, self.replica.encode(), last=self.backends[name]
                )
            except nats.js.errors.KeyWrongLastSequenceError:
                self.backends.pop(name)
        for name in sorted(seen - set(self.backends)):
            with contextlib.suppress(nats.js.errors.KeyWrongLastSequenceError):
                self.backends[name] = await self.kv.create(f"backend.{name}", self.replica.encode())
        return set(self.backends)

    async def release_all(self) -> None:
        for target in list(self.held):
            await self._release(target)
        for name, revision in list(self.backends.items()):
            with contextlib.suppress(nats.js.errors.Error):
                await self.kv.delete(f"backend.{name}", last=revision)
        self.backends.clear()
        with contextlib.suppress(nats.js.errors.Error):
            await self.kv.delete(f"replica.{self.replica}")

    async def _release(self, target: str) -> None:
        revision = self.held.pop(target, None)
        if revision is None:
            return
        with contextlib.suppress(nats.js.errors.Error):  # it expires anyway
            await self.kv.delete(lease_key(target), last=revision)
