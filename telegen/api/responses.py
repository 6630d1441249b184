"""JSON bodies, the contract's error body, and the value conversions every handler shares."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

JSON_TYPE = "application/json"

ERROR_CODES: dict[int, str] = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "invalid_request",
    413: "invalid_request",
    414: "invalid_request",
    429: "rate_limited",
    431: "invalid_request",
    500: "internal_error",
    501: "not_implemented",
    503: "service_unavailable",
}


class ApiError(Exception):
    """Raised by handlers and checks; the dispatcher turns it into the contract's error body."""

    def __init__(
        self,
        status: int,
        message: str,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        error: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error or ERROR_CODES.get(status, "internal_error")
        self.message = message
        self.details = dict(details or {})
        self.headers = dict(headers or {})


def rfc3339(moment: datetime) -> str:
    """UTC, second precision, trailing Z, as the contract writes timestamps."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def jsonable(value: Any) -> Any:
    """Plain JSON tree: datetimes as RFC 3339, tuples/sets as lists, NaN/inf as null."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return [jsonable(v) for v in sorted(value, key=str)]
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    text = json.dumps(jsonable(body), ensure_ascii=False, separators=(",", ":"))
    resp = web.Response(status=status, text=text, content_type=JSON_TYPE, charset="utf-8")
    for name, value in (headers or {}).items():
        resp.headers[name] = value
    return resp


def error_body(error: str, message: str, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"error": error, "message": message, "details": dict(details or {})}


def error_response(exc: ApiError) -> web.Response:
    return json_response(error_body(exc.error, exc.message, exc.details), exc.status, exc.headers)


def error_bytes(status: int, message: str) -> bytes:
    """A whole error body, for the protocol layer that answers before any handler runs."""
    body = error_body(ERROR_CODES.get(status, "invalid_request"), message)
    return json.dumps(body, separators=(",", ":")).encode()
