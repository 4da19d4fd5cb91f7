"""A lean HTTP/1.1 keep-alive load generator (asyncio streams, no client library).

Python HTTP clients cost more per request than the servers measured here, so they would
measure themselves; this one sends prepared request bytes and reads each response by its
Content-Length, which costs a few microseconds.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    """Requests completed, seconds taken and each request's latency in ms."""

    requests: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def request_bytes(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one response (head and body); its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def run_load(
    port: int,
    request: bytes,
    *,
    connections: int = 8,
    seconds: float | None = None,
    total: int | None = None,
) -> LoadResult:
    """Send `request` over `connections` keep-alive connections for a time or a count."""
    stop_at = time.perf_counter() + (seconds or 3600)
    remaining = [total if total is not None else -1]
    latencies: list[float] = []

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < stop_at and remaining[0] != 0:
                remaining[0] -= 1
                start = time.perf_counter()
                writer.write(request)
                status = await read_response(reader)
                if status >= 400:
                    raise RuntimeError(f"HTTP {status} under load")
                latencies.append((time.perf_counter() - start) * 1000)
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    return LoadResult(len(latencies), time.perf_counter() - start, latencies)
