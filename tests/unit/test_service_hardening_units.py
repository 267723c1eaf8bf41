"""Pure parts of the service hardening (issue 9): body-limit settings, bounded error messages, parse-failure
wording, the HEALTHCHECK command, the fast path's size cut-off. The HTTP behaviour is tested against a
real uvicorn and redis-server in tests/integration/test_service_hardening.py."""
import asyncio
import json
import subprocess
import sys
import time

import pytest
from pydantic import BaseModel

from cachedmodel.service.__main__ import main
from cachedmodel.service.errors import MAX_MESSAGE_CHARS, MAX_MESSAGES, _type_name, bounded, classify, unparsable_body
from cachedmodel.service.fastpath import MAX_FAST_BODY, PredictionFastPath
from cachedmodel.service.limits import RequestLimits, SettingsError, request_limits
from cachedmodel.service.probe import HEALTHCHECK_COMMAND
from cachedmodel.testing.model_service import REPO


def test_body_limits_default_to_1_mib_and_10_seconds():
    assert request_limits({}) == RequestLimits(1024 * 1024, 10.0)
    assert request_limits({}).header_timeout_seconds == 10.0
    assert request_limits({"CACHEDMODEL_HEADER_TIMEOUT_SECONDS": "2.5"}).header_timeout_seconds == 2.5
    assert request_limits({"CACHEDMODEL_MAX_BODY_BYTES": "", "CACHEDMODEL_BODY_TIMEOUT_SECONDS": ""}) == \
        RequestLimits(1024 * 1024, 10.0)
    assert request_limits({"CACHEDMODEL_MAX_BODY_BYTES": "4096", "CACHEDMODEL_BODY_TIMEOUT_SECONDS": "2.5"}) == \
        RequestLimits(4096, 2.5)


@pytest.mark.parametrize("environ, named", [
    ({"CACHEDMODEL_MAX_BODY_BYTES": "1MiB"}, "CACHEDMODEL_MAX_BODY_BYTES"),
    ({"CACHEDMODEL_MAX_BODY_BYTES": "0"}, "CACHEDMODEL_MAX_BODY_BYTES"),
    ({"CACHEDMODEL_BODY_TIMEOUT_SECONDS": "soon"}, "CACHEDMODEL_BODY_TIMEOUT_SECONDS"),
    ({"CACHEDMODEL_BODY_TIMEOUT_SECONDS": "-1"}, "CACHEDMODEL_BODY_TIMEOUT_SECONDS"),
    ({"CACHEDMODEL_BODY_TIMEOUT_SECONDS": "inf"}, "CACHEDMODEL_BODY_TIMEOUT_SECONDS"),
    ({"CACHEDMODEL_BODY_TIMEOUT_SECONDS": "nan"}, "CACHEDMODEL_BODY_TIMEOUT_SECONDS"),
    ({"CACHEDMODEL_HEADER_TIMEOUT_SECONDS": "soon"}, "CACHEDMODEL_HEADER_TIMEOUT_SECONDS"),
    ({"CACHEDMODEL_HEADER_TIMEOUT_SECONDS": "0"}, "CACHEDMODEL_HEADER_TIMEOUT_SECONDS"),
    ({"CACHEDMODEL_HEADER_TIMEOUT_SECONDS": "inf"}, "CACHEDMODEL_HEADER_TIMEOUT_SECONDS"),
])
def test_bad_body_limits_are_refused_naming_the_variable(environ, named, capsys):
    with pytest.raises(SettingsError, match=named):
        request_limits(environ)
    assert main(environ) == 2  # the container stops at once with one clear line
    assert named in capsys.readouterr().err


def test_messages_are_capped_in_number_and_length():
    messages = bounded(f"m{i}" for i in range(1000))
    assert messages[:MAX_MESSAGES] == [f"m{i}" for i in range(MAX_MESSAGES)]
    assert messages[-1] == f"... and {1000 - MAX_MESSAGES} more" and len(messages) == MAX_MESSAGES + 1
    (long,) = bounded(["x" * 100_000])
    assert len(long) == MAX_MESSAGE_CHARS and long.endswith("...")
    assert bounded(["a", "b"]) == ["a", "b"]


def test_validation_errors_describe_only_the_first_ones_and_count_the_rest():
    errors = [{"type": "extra_forbidden", "loc": ("body", f"k{i}" * 1000), "msg": "Extra inputs", "input": 0}
              for i in range(50_000)]
    status, kind, messages = classify(errors, "application/json")
    assert (status, kind) == (400, "ValidationError")
    assert len(messages) == MAX_MESSAGES + 1 and messages[-1] == f"... and {50_000 - MAX_MESSAGES} more"
    assert all(len(message) <= MAX_MESSAGE_CHARS for message in messages)


def test_a_huge_integer_input_is_described_without_failing():
    huge = int("9" * 4000) ** 2  # more digits than repr() converts
    status, _, (message,) = classify([{"type": "less_than_equal", "loc": ("body", "age"), "msg": "Input should be <= 65",
                                       "input": huge}], "application/json")
    assert status == 400 and "too large to show" in message


def test_parse_failures_are_worded_by_cause():
    try:
        b"\xff".decode("utf-8")
    except UnicodeDecodeError as error:
        assert "UTF-8" in unparsable_body(error)
    assert "nested too deeply" in unparsable_body(RecursionError("maximum recursion depth exceeded"))
    assert "digits" in unparsable_body(ValueError("Exceeds the limit (4300 digits) for integer string conversion"))
    assert unparsable_body(None) == "request body could not be parsed as JSON"


def test_error_type_names_come_from_the_status():
    assert [_type_name(s) for s in (404, 405, 408, 429, 599)] == \
        ["NotFound", "MethodNotAllowed", "RequestTimeout", "TooManyRequests", "HTTPError"]


def test_the_dockerfile_healthcheck_is_the_probe_modules_command():
    from tests.integration.test_service_image import DOCKERFILE, image_contract
    assert image_contract(DOCKERFILE)["healthcheck"] == HEALTHCHECK_COMMAND


def test_the_healthcheck_command_runs_the_probe_file_without_the_package():
    """Nothing listens on port 1: the probe itself must answer 'probe: ...' and exit 1, having imported no
    part of cachedmodel (runpy runs probe.py as a file)."""
    command = [sys.executable if part == "python" else part for part in HEALTHCHECK_COMMAND]
    result = subprocess.run([command[0], "-X", "importtime", *command[1:]], env={"PORT": "1"}, cwd=REPO,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "probe: http://127.0.0.1:1/api/health/ready" in result.stderr
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")]
    assert not [name for name in imported if name.split(".")[0] == "cachedmodel"]


class _Target:
    class Input(BaseModel):
        value: int
        pad: str = ""

    input_schema = Input

    def __init__(self):
        self.asked = 0

    async def aget_cached(self, data, remember_miss=False, build=None):
        self.asked += 1
        return None


def test_the_fast_path_leaves_large_bodies_to_the_route_even_in_one_piece():
    """BodyLimits hands the whole body over in one message: the size cut-off must still hold."""
    target, seen = _Target(), []

    async def route(scope, receive, send):
        seen.append(len((await receive())["body"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    app = PredictionFastPath(route, resolve=lambda name: target, unavailable=lambda: None)
    for size in (100, MAX_FAST_BODY + 100):
        body = json.dumps({"value": 1, "pad": "x" * size}).encode()
        scope = {"type": "http", "method": "POST", "path": "/api/models/m/prediction",
                 "headers": [(b"content-type", b"application/json")]}
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive():
            return messages.pop(0)

        async def send(message):
            pass
        asyncio.run(app(scope, receive, send))
    assert target.asked == 1 and len(seen) == 2 and seen[1] > MAX_FAST_BODY


def test_unhandled_errors_become_a_shaped_500_or_are_contained_after_the_answer():
    from cachedmodel.service.errors import UnhandledErrors

    async def crash_before(scope, receive, send):
        raise KeyError("bug")

    async def crash_after(scope, receive, send):
        await send({"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})
        raise KeyError("re-raised after the answer")

    def run(app) -> list:
        sent = []

        async def send(message):
            sent.append(message)
        asyncio.run(UnhandledErrors(app)({"type": "http", "method": "GET", "path": "/x", "headers": []}, None, send))
        return sent

    start, body = run(crash_before)
    assert start["status"] == 500
    assert json.loads(body["body"]) == {"type": "ServiceError", "messages": ["internal error; see the service log"]}
    start, body = run(crash_after)  # nothing more is sent after the app's own answer, and nothing raised
    assert start["status"] == 500 and body["body"] == b"{}"


def _limits_app(limits, messages, hang=False):
    """BodyLimits around an app that records the body it got; receive() hands out `messages`, then hangs."""
    from cachedmodel.service.limits import BodyLimits
    got, sent = [], []

    async def app(scope, receive, send):
        got.append(await receive())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()  # a client that sends nothing more

    async def send(message):
        sent.append(message)
    scope = {"type": "http", "method": "POST", "path": "/p", "headers": []}
    return BodyLimits(app, limits), scope, receive, send, got, sent


def test_body_limits_join_chunks_refuse_oversize_and_time_out():
    app, scope, receive, send, got, sent = _limits_app(RequestLimits(10, 5.0), [
        {"type": "http.request", "body": b"abc", "more_body": True},
        {"type": "http.request", "body": b"def", "more_body": False}])
    asyncio.run(app(scope, receive, send))
    assert got == [{"type": "http.request", "body": b"abcdef", "more_body": False}] and sent[0]["status"] == 200

    app, scope, receive, send, got, sent = _limits_app(RequestLimits(4, 5.0, linger_seconds=0.05), [
        {"type": "http.request", "body": b"abc", "more_body": True},
        {"type": "http.request", "body": b"def", "more_body": True}])
    asyncio.run(app(scope, receive, send))
    assert got == [] and sent[0]["status"] == 413 and (b"connection", b"close") in sent[0]["headers"]

    app, scope, receive, send, got, sent = _limits_app(RequestLimits(10, 0.05), [
        {"type": "http.request", "body": b"abc", "more_body": True}])
    asyncio.run(app(scope, receive, send))
    assert got == [] and sent[0]["status"] == 408
    assert json.loads(sent[1]["body"])["type"] == "RequestTimeout"


def test_body_limits_let_other_cancellations_through():
    """Only its own deadline becomes a 408: a shutdown's cancellation must still cancel the request."""
    app, scope, receive, send, got, sent = _limits_app(RequestLimits(10, 30.0), [])

    async def cancel_soon():
        task = asyncio.ensure_future(app(scope, receive, send))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    asyncio.run(cancel_soon())
    assert sent == []


def _linger_run(limits, messages, headers=()):
    """BodyLimits' answer to an over-limit body, with the time it took and what was left unread."""
    app, scope, receive, send, got, sent = _limits_app(limits, messages)
    scope["headers"] = list(headers)
    started = time.monotonic()
    asyncio.run(app(scope, receive, send))
    return sent, time.monotonic() - started


def test_a_413_is_written_whole_then_the_rest_of_the_body_is_read_before_the_close():
    """Lingering close: the 413 (status, headers and the whole JSON body) goes out first; the response is
    completed, which makes uvicorn close the connection, only after the rest of the upload was read. Before,
    the close came at once, and a client still uploading met a reset instead of its 413."""
    chunk = {"type": "http.request", "body": b"x" * 1000, "more_body": True}
    messages = [dict(chunk) for _ in range(50)] + [{"type": "http.request", "body": b"", "more_body": False}]
    sent, _ = _linger_run(RequestLimits(1500, 5.0), messages)
    assert sent[0]["status"] == 413 and (b"connection", b"close") in sent[0]["headers"]
    assert json.loads(sent[1]["body"])["type"] == "ContentTooLarge" and sent[1]["more_body"] is True
    assert sent[2:] == [{"type": "http.response.body", "body": b"", "more_body": False}]
    assert messages == [], "the whole rest of the body was read"


@pytest.mark.parametrize("case", ["bytes", "seconds", "declared-too-large", "expect-100-continue", "all-read"])
def test_the_lingering_close_is_bounded(case):
    chunk = {"type": "http.request", "body": b"x" * 1000, "more_body": True}
    # then receive() hangs: a client that never finishes; "bytes": 100 kB, cut after the 20 kB bound
    messages = [dict(chunk) for _ in range(100 if case == "bytes" else 5)]
    limits, headers = RequestLimits(1500, 5.0, linger_bytes=20_000, linger_seconds=0.3), []
    if case == "declared-too-large":
        headers = [(b"content-length", b"100000")]  # more than linger_bytes: it would be cut anyway
    if case == "expect-100-continue":
        headers = [(b"content-length", b"5000"), (b"expect", b"100-continue")]  # it sends nothing
    if case == "all-read":
        messages = [{"type": "http.request", "body": b"x" * 3000}]  # too large, but complete: nothing more comes
    left = len(messages)
    sent, seconds = _linger_run(limits, messages, headers)
    assert sent[0]["status"] == 413 and sent[-1].get("more_body", False) is False
    if case == "bytes":
        assert left - len(messages) == 2 + 20 and seconds < 0.25  # 2 read as the body, 20 discarded
    elif case == "seconds":
        assert 0.25 < seconds < 2.0 and messages == []
    elif case == "all-read":
        assert messages == [] and seconds < 0.25  # nothing waited for
    else:
        assert len(messages) == left and seconds < 0.25  # nothing read, nothing waited for


# ---------------------------------------------------------------- the header-read timeout (uvicorn protocol)

class _Transport:
    """The asyncio transport a uvicorn protocol writes to, in memory."""

    def __init__(self):
        self.written, self.closed = b"", False

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def write(self, data):
        self.written += data

    def close(self):
        self.closed = True

    def is_closing(self):
        return self.closed

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass


def _protocol_run(script, timeout=0.2, app_seconds=0.0):
    """Run `script(protocol, transport)` (a coroutine function) on a fresh loop against the service's
    protocol class with a `timeout` header timeout and an app that takes `app_seconds` to answer."""
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    from cachedmodel.service.header_timeout import header_timeout_protocol

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        await asyncio.sleep(app_seconds)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    async def main():
        config = Config(app, lifespan="off", log_level="warning")
        config.load()
        protocol = header_timeout_protocol(timeout)(config=config, server_state=ServerState(), app_state={},
                                                    _loop=asyncio.get_running_loop())
        transport = _Transport()
        protocol.connection_made(transport)
        try:
            await script(protocol, transport)
            return transport.written, transport.closed
        finally:
            protocol.connection_lost(None)
    return asyncio.run(main())


GET = b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n"


def test_a_head_sent_slowly_is_answered_408_and_the_connection_closed():
    async def script(protocol, transport):
        for byte in GET[:-4]:
            protocol.data_received(bytes([byte]))  # all at once: it is the clock that counts, not the bytes
        await asyncio.sleep(0.1)
        assert not transport.closed
        await asyncio.sleep(0.2)
    written, closed = _protocol_run(script)
    assert closed and written.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    head, _, body = written.partition(b"\r\n\r\n")
    assert b"connection: close" in head
    assert json.loads(body) == {"type": "RequestTimeout",
                                "messages": ["request headers not received within 0.2 seconds"]}


@pytest.mark.parametrize("opening", [b"", b"\r\n"], ids=["nothing", "blank-lines"])
def test_a_connection_that_never_starts_a_request_is_closed_without_an_answer(opening):
    async def script(protocol, transport):
        if opening:
            protocol.data_received(opening)
        await asyncio.sleep(0.3)
    written, closed = _protocol_run(script)
    assert closed and written == b""


def test_complete_heads_arm_no_timer_and_slow_model_work_or_idle_keep_alive_is_not_cut():
    """One read with the whole head: no timer left behind. A 0.5 s app and 0.3 s of idle keep-alive, both
    longer than the 0.2 s header timeout: answered, connection open (the body and keep-alive have their own
    timeouts)."""
    async def script(protocol, transport):
        protocol.data_received(GET)
        assert protocol._head_timer is None
        await asyncio.sleep(0.7)
        assert transport.written.startswith(b"HTTP/1.1 200 OK") and not transport.closed
        await asyncio.sleep(0.3)  # idle between requests (uvicorn's keep-alive timeout is 5 s)
        protocol.data_received(b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
        assert protocol._head_timer is None  # the head is complete; the rest of the body is not its business
        await asyncio.sleep(0.3)
        protocol.data_received(b"cd")
        await asyncio.sleep(0.7)
    written, closed = _protocol_run(script, app_seconds=0.5)
    assert written.count(b"HTTP/1.1 200 OK") == 2 and not closed
    assert b"408" not in written


def test_the_next_head_on_a_keep_alive_connection_is_timed_from_its_first_bytes():
    async def script(protocol, transport):
        protocol.data_received(GET)
        await asyncio.sleep(0.3)  # answered; idle longer than the header timeout
        protocol.data_received(GET[:10])
        await asyncio.sleep(0.1)
        assert transport.written.count(b"HTTP/1.1") == 1 and not transport.closed
        await asyncio.sleep(0.2)
    written, closed = _protocol_run(script)
    assert closed and written.count(b"HTTP/1.1 408") == 1


def test_a_pipelined_head_waits_for_the_response_in_progress_not_for_the_timer():
    """The client sent its next head (partly) while the first request is still being answered: the server
    is the slow one, so no 408 while the 0.5 s answer is being made."""
    async def script(protocol, transport):
        protocol.data_received(GET + GET[:10])
        await asyncio.sleep(0.4)
        assert not transport.closed
        protocol.data_received(GET[10:])
        await asyncio.sleep(1.2)
    written, closed = _protocol_run(script, app_seconds=0.5)
    assert written.count(b"HTTP/1.1 200 OK") == 2 and b"408" not in written
