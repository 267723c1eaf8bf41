"""Request limits: a body-read timeout (408) and a size limit (413), as an ASGI layer; the settings
of the header-read timeout too (enforced by cachedmodel.service.header_timeout, in uvicorn's protocol).

uvicorn waits for a request body as long as the client takes and accepts any size, so a few
clients sending a byte a second, or one sending gigabytes, hold the service's connections and
memory. This layer reads each request's body before the app sees it: all of it within
CACHEDMODEL_BODY_TIMEOUT_SECONDS (default 10) of the request's headers, and at most
CACHEDMODEL_MAX_BODY_BYTES (default 1 MiB). A Content-Length above the limit is refused before a
byte is read (no `100 Continue` is sent). Refusals carry the service's error shape
{"type", "messages"} and `Connection: close`. `python -m cachedmodel.service` checks the settings
before it starts uvicorn (a bad value: exit code 2 naming the variable). Stdlib only.

A 413 is followed by a lingering close, as nginx does: a client still uploading when the answer
comes would otherwise meet a closed socket (a broken pipe or a reset) and never read its 413. The
rest of the body is read and discarded, at most LINGER_BYTES or LINGER_SECONDS, whichever comes
first (not when the client waits for `100 Continue`, or when the declared rest is larger than the
bound: it would be cut anyway), and only then is the connection closed.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Mapping

from cachedmodel.env import byte_count

MAX_BODY_ENV = "CACHEDMODEL_MAX_BODY_BYTES"
BODY_TIMEOUT_ENV = "CACHEDMODEL_BODY_TIMEOUT_SECONDS"
HEADER_TIMEOUT_ENV = "CACHEDMODEL_HEADER_TIMEOUT_SECONDS"
DRAIN_ENV = "CACHEDMODEL_DRAIN_SECONDS"
DEFAULT_DRAIN_SECONDS = 5.0
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_BODY_TIMEOUT_SECONDS = 10.0
DEFAULT_HEADER_TIMEOUT_SECONDS = 10.0
# the lingering close after a 413: read and discard at most this much of the rest of the body
LINGER_BYTES = 8 * 1024 * 1024
LINGER_SECONDS = 2.0


class SettingsError(ValueError):
    """A bad environment variable; the message names it."""


@dataclass(frozen=True)
class RequestLimits:
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    body_timeout_seconds: float = DEFAULT_BODY_TIMEOUT_SECONDS
    header_timeout_seconds: float = DEFAULT_HEADER_TIMEOUT_SECONDS
    drain_seconds: float = DEFAULT_DRAIN_SECONDS  # after SIGTERM: serve on, closing each connection after its answer
    linger_bytes: int = LINGER_BYTES      # not settings: the bounds of the lingering close after a 413
    linger_seconds: float = LINGER_SECONDS


def _seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    text = environ.get(name) or str(default)
    try:
        seconds = float(text)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {text!r}") from None
    if not 0 < seconds < float("inf"):
        raise SettingsError(f"{name} must be a positive number of seconds, got {text!r}")
    return seconds


def request_limits(environ: Mapping[str, str]) -> RequestLimits:
    """Pure: environment -> RequestLimits (empty or unset variables keep the defaults)."""
    size = byte_count(environ, MAX_BODY_ENV, DEFAULT_MAX_BODY_BYTES, SettingsError)
    drain = environ.get(DRAIN_ENV) or str(DEFAULT_DRAIN_SECONDS)
    try:
        drain_seconds = float(drain)
    except ValueError:
        drain_seconds = float("nan")
    if not 0 <= drain_seconds <= 300:
        raise SettingsError(f"{DRAIN_ENV} must be a number of seconds from 0 (off) to 300, got {drain!r}")
    return RequestLimits(size, _seconds(environ, BODY_TIMEOUT_ENV, DEFAULT_BODY_TIMEOUT_SECONDS),
                         _seconds(environ, HEADER_TIMEOUT_ENV, DEFAULT_HEADER_TIMEOUT_SECONDS), drain_seconds)


def _declared_length(scope) -> int | None:
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the HTTP server rejects a malformed Content-Length itself
    return None


def _expects_continue(scope) -> bool:
    return any(key == b"expect" and value.lower() == b"100-continue" for key, value in scope["headers"])


def _expire(task: asyncio.Task, expired: list) -> None:
    expired.append(True)
    task.cancel()


def error_body(kind: str, message: str) -> bytes:
    """The service's error shape, {"type", "messages"}, as JSON bytes."""
    return json.dumps({"type": kind, "messages": [message]}, separators=(",", ":")).encode()


async def send_error(send, status: int, kind: str, message: str, close: bool = False, linger=None) -> None:
    """One {"type", "messages"} answer. `linger`: a coroutine function awaited after the whole answer is
    written and before the response is complete (the server closes a `close` connection at completion)."""
    payload = error_body(kind, message)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if close:
        headers.append((b"connection", b"close"))  # the rest of the body is never handed to the app
    await send({"type": "http.response.start", "status": status, "headers": headers})
    if linger is None:
        await send({"type": "http.response.body", "body": payload})
        return
    await send({"type": "http.response.body", "body": payload, "more_body": True})  # all of it: Content-Length
    await linger()
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _discard(receive, max_bytes: int) -> None:
    """Read and drop request body messages until the body ends, the client leaves, or max_bytes."""
    discarded = 0
    while discarded < max_bytes:
        message = await receive()
        if message["type"] != "http.request":
            return  # the client went away
        discarded += len(message.get("body", b""))
        if not message.get("more_body", False):
            return  # the whole body is read: the close that follows is a clean one


class BodyLimits:
    """ASGI middleware: buffers each HTTP request body within the limits, then hands it to the app."""

    def __init__(self, app, limits: RequestLimits):
        self.app = app
        self.limits = limits

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limits.max_body_bytes
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            # a client that asked for `100 Continue` and gets this answer instead sends no body
            rest = 0 if _expects_continue(scope) else declared
            return await self._too_large(receive, send, f"request body of {declared} bytes is larger than the limit",
                                         rest)
        timeout = self.limits.body_timeout_seconds
        # A bare loop timer that cancels this task, not asyncio.timeout(): this runs on every request,
        # cache hits included, and costs a third as much (the hit path is ~120 us per request).
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        expired = []
        timer = loop.call_at(loop.time() + timeout, _expire, task, expired)
        chunks, size = [], 0
        try:
            while size <= limit:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away before sending its body: nobody to answer
                chunk = message.get("body", b"")
                size += len(chunk)
                if not message.get("more_body", False):
                    if not chunks:
                        break  # the usual case: the whole body in one message, handed on as it is
                    chunks.append(chunk)
                    message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
                    break
                chunks.append(chunk)
        except asyncio.CancelledError:
            if not expired:
                raise  # cancelled by someone else (shutdown, client gone)
            task.uncancel()
            return await send_error(send, 408, "RequestTimeout",
                                    f"request body not received within {timeout:g} seconds ({size} bytes "
                                    f"arrived); send the whole body at once", close=True)
        finally:
            timer.cancel()
        if size > limit:
            if not message.get("more_body", False):
                rest = 0  # all of it arrived: nothing to linger for
            else:
                rest = None if declared is None else declared - size  # (chunked: unknown)
            return await self._too_large(receive, send, "request body is larger than the limit", rest)
        pending = [message]

        async def replay():
            if pending:
                return pending.pop()
            return await receive()  # after the body: disconnect notices, as usual
        await self.app(scope, replay, send)

    async def _too_large(self, receive, send, what: str, rest: int | None) -> None:
        """413, then a lingering close (see the module's doc) when the rest of the body, `rest` bytes (None:
        unknown), may still be on its way and is small enough to read."""
        limits = self.limits
        linger = None
        if rest is None or 0 < rest <= limits.linger_bytes:
            async def linger():
                try:
                    async with asyncio.timeout(limits.linger_seconds):
                        await _discard(receive, limits.linger_bytes)
                except TimeoutError:
                    pass  # a client still sending after the bound is cut
        await send_error(send, 413, "ContentTooLarge", f"{what} of {limits.max_body_bytes} bytes", close=True,
                         linger=linger)
