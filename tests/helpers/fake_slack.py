"""A local HTTP server standing in for Slack (incoming webhooks and chat.postMessage),
generic webhook receivers and Grafana's annotation API, over real HTTP.

Each path has a script of answers, taken in order (the last one repeats): `200`,
`429:<retry-after>`, `500`, `404:<slack error>`, or `hold` (keep the request open until
`release()`, then answer 200, unless the sender has gone away meanwhile: that request was
never accepted). A request counts as a post only when it is answered 200.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from qjt.devstack import free_port


@dataclass
class Received:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    raw: bytes
    at: float
    status: int


@dataclass
class FakeSlack:
    port: int = field(default_factory=free_port)
    scripts: dict[str, list[str]] = field(default_factory=dict)
    requests: list[Received] = field(default_factory=list)
    _release: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, path: str, *answers: str) -> str:
        """Answers for `path`; returns its full URL."""
        self.scripts[path] = list(answers)
        return f"{self.url}{path}"

    def posts(self, path: str | None = None) -> list[Received]:
        """Requests answered 200 (on `path`, if given)."""
        with self._lock:
            return [r for r in self.requests if r.status == 200 and path in (None, r.path)]

    def attempts(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def holding(self, path: str) -> bool:
        with self._lock:
            return any(r.path == path and r.status == 0 for r in self.requests)

    def release(self) -> None:
        self._release.set()

    async def _answer(self, request: Request) -> Response:
        path = request.url.path
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = dict((await request.form()).items())
        with self._lock:
            script = self.scripts.setdefault(path, ["200"])
            answer = script.pop(0) if len(script) > 1 else script[0]
            entry = Received(path, body, dict(request.headers), raw, time.monotonic(), 0)
            self.requests.append(entry)
        if answer == "hold":
            while not self._release.is_set():
                await asyncio.sleep(0.05)
            if await request.is_disconnected():
                entry.status = 499  # the sender went away before an answer: never accepted
                return PlainTextResponse("client gone", 499)
            answer = "200"
        code, _, extra = answer.partition(":")
        entry.status = int(code)
        if entry.status == 429:
            return PlainTextResponse("rate_limited", 429, headers={"Retry-After": extra or "1"})
        if path.startswith("/api/chat.postMessage"):
            ok = entry.status == 200
            payload = {"ok": ok, **({} if ok else {"error": extra or "internal_error"})}
            return JSONResponse(payload, status_code=entry.status)
        return PlainTextResponse("ok" if entry.status == 200 else extra or "error", entry.status)

    def start(self) -> FakeSlack:
        app = Starlette(routes=[Route("/{path:path}", self._answer, methods=["POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the fake Slack server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.should_exit = True
        self._thread.join(timeout=10)
