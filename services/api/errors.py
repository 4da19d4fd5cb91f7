"""One error shape for every 4xx/5xx: `{"error": {"code", "message", "details"}}`.

Validation errors name the field and the problem; nothing echoes secrets (request bodies
are never copied into errors, only field locations and pydantic's messages).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from psycopg_pool import PoolTimeout
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("qjt.api")


class ApiError(Exception):
    """An error a client should see, with its HTTP status."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = headers


class ErrorBody(BaseModel):
    """What went wrong."""

    code: str
    message: str
    details: list[dict[str, Any]] = []


class ErrorResponse(BaseModel):
    """Every error response has this shape."""

    error: ErrorBody


def _response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details or []}}
    return JSONResponse(body, status_code=status, headers=headers)


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def validation_details(errors: list[Any]) -> list[dict[str, Any]]:
    """Pydantic errors as `{field, problem}` (never the offending value)."""
    return [{"field": _field(e.get("loc", ())), "problem": str(e.get("msg", ""))} for e in errors]


PageError = Callable[[Request, int, str], Response]
API_PATHS = ("/v1/", "/healthz", "/metrics", "/docs", "/openapi.json", "/static/")


def install_error_handlers(app: FastAPI, page_error: PageError | None = None) -> None:
    """Map errors to the one error shape (an HTML page for the console's pages)."""

    def for_page(request: Request) -> bool:
        return page_error is not None and not request.url.path.startswith(API_PATHS)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        if page_error is not None and for_page(request):
            return page_error(request, exc.status, exc.message)
        return _response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        details = validation_details(list(exc.errors()))
        summary = "; ".join(f"{d['field']}: {d['problem']}" for d in details[:5])
        if page_error is not None and for_page(request):
            return page_error(request, 422, f"invalid request: {summary}")
        return _response(422, "invalid_request", f"invalid request: {summary}", details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if page_error is not None and for_page(request):
            return page_error(request, exc.status_code, str(exc.detail))
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _response(exc.status_code, code, str(exc.detail), headers=dict(exc.headers or {}))

    @app.exception_handler(psycopg.DataError)
    @app.exception_handler(UnicodeEncodeError)
    async def unstorable_text(_request: Request, exc: Exception) -> JSONResponse:
        # Raised before anything is committed (the transaction rolls back).
        return _response(
            422,
            "invalid_text",
            "a text value contains characters that cannot be stored: NUL (\\u0000) or an "
            "unpaired UTF-16 surrogate",
        )

    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(PoolTimeout)
    async def database_down(_request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable: %s", exc)
        return _response(
            503,
            "database_unavailable",
            "the database is unavailable; retry shortly",
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error(
            "unhandled error on %s %s: %s: %s",
            request.method,
            request.url.path,
            type(exc).__name__,
            exc,
        )
        return _response(500, "internal_error", "internal error; it has been logged")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing, unknown or revoked API key"},
    422: {"model": ErrorResponse, "description": "Invalid request; the message names the field"},
    429: {"model": ErrorResponse, "description": "Rate limit exceeded; see Retry-After"},
}
