"""Request errors as 4xx answers that name the problem (stock rest-model-service crashes into a 500
on a malformed JSON body because it joins integer error locations as strings).

Every error body has rest-model-service's `Error` shape: {"type": ..., "messages": [...]}, including
routing errors (404/405), bodies FastAPI cannot parse at all (not UTF-8, nested too deeply, integers
with more digits than Python converts) and unexpected exceptions (500). Messages are bounded: at most
MAX_MESSAGES of at most MAX_MESSAGE_CHARS each, then "... and N more", so a hostile body cannot make
a megabyte answer or log line. Rejected values reach the log only at DEBUG: INFO says what was
rejected (route, status, type, how many problems), never the values.
"""
from __future__ import annotations

import logging
import sys
from http import HTTPStatus
from typing import Any, Callable, Iterable

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

logger = logging.getLogger("cachedmodel.service")

MAX_MESSAGES = 20
MAX_MESSAGE_CHARS = 300


def bounded(messages: Iterable[str], total: int | None = None) -> list[str]:
    """Pure: at most MAX_MESSAGES messages, each cut to MAX_MESSAGE_CHARS, then '... and N more'
    (`total`: how many there were, when `messages` holds only the first ones)."""
    shown, seen = [], 0
    for message in messages:
        seen += 1
        if len(shown) < MAX_MESSAGES:
            shown.append(message if len(message) <= MAX_MESSAGE_CHARS else message[:MAX_MESSAGE_CHARS - 3] + "...")
        elif total is not None:
            break
    total = seen if total is None else total
    if total > len(shown):
        shown.append(f"... and {total - len(shown)} more")
    return shown


def error_response(status: int, kind: str, messages: list[str], headers: dict | None = None) -> JSONResponse:
    """The error shape; `messages` as they are (bounded() them first when they come from a request)."""
    return JSONResponse(status_code=status, content={"type": kind, "messages": messages}, headers=headers)


def is_json_content_type(value: str | None) -> bool:
    """application/json or application/*+json, parameters (charset) ignored."""
    if not value:
        return False
    media = value.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _field_path(location: Iterable[Any]) -> str:
    """('body', 'age') -> 'age'; nested locations are dotted; list indexes kept as numbers."""
    parts = [str(part) for part in location]
    if parts and parts[0] == "body":
        parts = parts[1:]
    return ".".join(parts)


def _shown(value: Any, limit: int = 60) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int with more digits than repr() converts
        return f"a {type(value).__name__} too large to show"
    return text if len(text) <= limit else text[:limit] + "..."


def _describe(error: dict) -> str:
    """One pydantic error as a sentence that starts with the field's name."""
    kind = error.get("type", "")
    field = _field_path(error.get("loc", ()))
    if kind == "missing":
        if not field:
            return "request body is missing: send a JSON object with the model's input fields"
        return f"field '{field}' is required"
    if kind == "extra_forbidden":
        return f"field '{field}' is not an input of this model"
    where = f"field '{field}'" if field else "body"
    got = f" (got {_shown(error['input'])})" if "input" in error else ""
    return f"{where}: {error.get('msg', 'invalid')}{got}"


def classify(errors: list[dict], content_type: str | None) -> tuple[int, str, list[str]]:
    """Pure: FastAPI validation errors -> (status, error type, messages)."""
    for error in errors:
        if error.get("type") == "json_invalid":
            location = list(error.get("loc", ()))
            position = location[1] if len(location) > 1 else "?"
            reason = (error.get("ctx") or {}).get("error", "JSON decode error")
            return 400, "MalformedJSON", bounded([f"request body is not valid JSON: {reason} at character {position}"])
    if not is_json_content_type(content_type) and any(tuple(e.get("loc", ())) == ("body",) for e in errors):
        shown = content_type or "none"
        return 415, "UnsupportedMediaType", bounded([f"request body must be JSON sent with Content-Type: "
                                                     f"application/json (got Content-Type: {shown})"])
    return 400, "ValidationError", bounded((_describe(error) for error in errors), total=len(errors))


def unparsable_body(cause: BaseException | None) -> str:
    """Pure: why FastAPI could not parse a JSON body (it says only "There was an error parsing the body")."""
    if isinstance(cause, UnicodeDecodeError):
        return f"request body is not valid JSON: not UTF-8 text ({cause.reason} at byte {cause.start})"
    if isinstance(cause, RecursionError):
        return "request body is not valid JSON for this service: it is nested too deeply"
    if isinstance(cause, ValueError) and "digits" in str(cause):
        return (f"request body is not valid JSON for this service: a number has more than "
                f"{sys.get_int_max_str_digits()} digits")
    return "request body could not be parsed as JSON"


def _log_rejection(request: Request, status: int, kind: str, messages: list[str], problems: int = 1) -> None:
    """INFO: what was rejected, without the values; DEBUG: the (bounded) messages, which quote them."""
    logger.info("rejected %s %s: %s %s (%d problem%s)", request.method, request.url.path, status, kind,
                problems, "" if problems == 1 else "s")
    logger.debug("rejected %s %s: %s", request.method, request.url.path, "; ".join(messages))


async def validation_exception_handler(request: Request, exception: RequestValidationError) -> JSONResponse:
    """Replaces rest-model-service's handler: never fails itself, answers 400/415 naming the field."""
    errors = list(exception.errors())
    status, kind, messages = classify(errors, request.headers.get("content-type"))
    _log_rejection(request, status, kind, messages, problems=len(errors) if kind == "ValidationError" else 1)
    return error_response(status, kind, messages)


def _type_name(status: int) -> str:
    """404 -> 'NotFound', 405 -> 'MethodNotAllowed' (pure)."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        return "HTTPError"
    return "".join(word.capitalize() if word.islower() else word for word in phrase.replace("-", " ").split())


def http_exception_handler(not_found: Callable[[Request], str]):
    """Starlette's HTTPException (routing errors, FastAPI's body-parse failure) in the error shape;
    `not_found(request)` words 404s."""
    async def handler(request: Request, exception: HTTPException) -> JSONResponse:
        status = exception.status_code
        headers = getattr(exception, "headers", None)
        if status in (204, 304):  # no body allowed
            return Response(status_code=status, headers=headers)
        if status == 400 and exception.__cause__ is not None:  # FastAPI: "There was an error parsing the body"
            kind, message = "MalformedJSON", unparsable_body(exception.__cause__)
            _log_rejection(request, status, kind, [message])
            return error_response(status, kind, bounded([message]), headers)
        if status == 404:
            return error_response(404, "NotFound", bounded([not_found(request)]), headers)
        if status == 405:
            message = f"method {request.method} is not allowed for {request.url.path}"
            return error_response(405, "MethodNotAllowed", bounded([message]), headers)
        detail = exception.detail if isinstance(exception.detail, str) else str(exception.detail)
        return error_response(status, _type_name(status), bounded([detail]), headers)
    return handler


INTERNAL_ERROR = "internal error; see the service log"


async def unexpected_exception_handler(request: Request, exception: Exception) -> JSONResponse:
    """A bug or an unforeseen failure inside the FastAPI app: 500 in the error shape (Starlette then
    re-raises the exception; UnhandledErrors logs it)."""
    return error_response(500, "ServiceError", [INTERNAL_ERROR])


class UnhandledErrors:
    """Outermost ASGI guard: an exception escaping the app is logged with its traceback once; the client
    gets a 500 in the error shape if no response had started (our own layers: fast path, body limits),
    and a response already sent (Starlette re-raises after its 500) is not followed by uvicorn's
    connection abort, which reset keep-alive clients before they read the answer."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def sending(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:  # noqa: BLE001 - the guard of last resort (cancellation is not caught)
            logger.exception("unexpected error answering %s %s", scope["method"], scope["path"])
            if not started:
                payload = JSONResponse(content={"type": "ServiceError", "messages": [INTERNAL_ERROR]}).body
                await send({"type": "http.response.start", "status": 500,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(payload)).encode())]})
                await send({"type": "http.response.body", "body": payload})
