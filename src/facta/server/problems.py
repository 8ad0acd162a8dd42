"""Errors as part of the HTTP interface: a status, a machine-readable code, a sentence.

Every client error is answered with a JSON body ``{"error": code, "detail": sentence, …}``.
A route turns the errors it knows into an :class:`ApiError` where it knows them (see
:func:`from_log_error`); the handlers below only render what was already classified, plus the
framework's own 404/405/422. Nothing turns an arbitrary exception into a 4xx.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from facta.log.errors import (
    AppendTimeout,
    CommitFailed,
    DuplicateEventId,
    IdempotencyKeyReused,
    InvalidInput,
    LimitExceeded,
    LogBusy,
    LogClosed,
    Overloaded,
    WrongExpectedVersion,
)
from facta.log.event import Expect

LogError = (
    InvalidInput
    | WrongExpectedVersion
    | IdempotencyKeyReused
    | DuplicateEventId
    | LogBusy
    | Overloaded
    | AppendTimeout
    | CommitFailed
    | LogClosed
)
LOG_ERRORS = (
    InvalidInput,
    WrongExpectedVersion,
    IdempotencyKeyReused,
    DuplicateEventId,
    LogBusy,
    Overloaded,
    AppendTimeout,
    CommitFailed,
    LogClosed,
)


class ApiError(Exception):
    """An error with its HTTP status, code and detail, raised where the problem is known."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "detail": self.detail, **self.extra}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def unavailable(code: str, detail: str, retry_after: int, **extra: Any) -> ApiError:
    """A 503 that tells the client when to try again."""
    return ApiError(503, code, detail, headers={"Retry-After": str(retry_after)}, **extra)


def from_log_error(exc: LogError, *, retry_after: int = 1) -> ApiError:
    """The HTTP form of an error the log raised."""
    match exc:
        case LimitExceeded():
            return ApiError(413, "limit_exceeded", str(exc))
        case InvalidInput():
            return ApiError(422, "invalid_input", str(exc))
        case WrongExpectedVersion():
            return ApiError(
                409,
                "wrong_expected_version",
                str(exc),
                stream=exc.stream,
                expected=_expectation_json(exc.expected),
                actual=exc.actual,
            )
        case IdempotencyKeyReused():
            return ApiError(409, "idempotency_key_reused", str(exc), key=exc.key)
        case DuplicateEventId():
            return ApiError(409, "duplicate_event_id", str(exc), id=exc.event_id)
        case LogBusy():
            return unavailable("log_busy", str(exc), retry_after)
        case Overloaded():
            return unavailable("overloaded", str(exc), retry_after)
        case AppendTimeout() | CommitFailed():
            return unavailable(
                "append_unknown",
                f"{exc} (the append may or may not have been written: retry with the same "
                "idempotency key)",
                retry_after,
            )
        case LogClosed():
            return unavailable("log_closed", str(exc), retry_after)


def _expectation_json(expected: object) -> object:
    if isinstance(expected, Expect):
        return {Expect.ANY: "any", Expect.NO_STREAM: "none", Expect.STREAM_EXISTS: "exists"}[
            expected
        ]
    return expected


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "content_too_large",
    415: "unsupported_media_type",
}


def install_handlers(app: FastAPI) -> None:
    """Render :class:`ApiError`, the router's 404/405 and request validation as JSON bodies."""

    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return exc.response()

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _STATUS_CODES.get(exc.status_code, f"http_{exc.status_code}")
        return JSONResponse(
            {"error": code, "detail": str(exc.detail)},
            status_code=exc.status_code,
            headers=dict(exc.headers or {}),
        )

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = [
            {
                "where": ".".join(str(part) for part in error.get("loc", ())),
                "problem": error.get("msg", ""),
            }
            for error in exc.errors()
        ]
        first = problems[0] if problems else {"where": "request", "problem": "invalid"}
        return JSONResponse(
            {
                "error": "invalid_request",
                "detail": f"{first['where']}: {first['problem']}",
                "problems": problems,
            },
            status_code=422,
        )

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)


PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "A client or server error: a machine-readable code and a sentence; other "
    "members name the parameter, view, stream, … concerned.",
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
    "required": ["error", "detail"],
    "additionalProperties": True,
}


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document with every error answered as a :data:`PROBLEM_SCHEMA` body.

    FastAPI documents request validation errors with its own shape; facta answers every error
    (422 included) with a problem body, so each operation gets it as its ``default`` response.
    """
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = PROBLEM_SCHEMA
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    problem = {
        "description": "A problem (4xx, 503 with Retry-After, 504)",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            responses.pop("422", None)
            responses["default"] = problem
    return schema
