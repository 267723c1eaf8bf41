"""Pure parts of the service hardening (issue 9): body-limit settings, bounded error messages, parse-failure
wording, the HEALTHCHECK command, the fast path's size cut-off. The HTTP behaviour is tested against a
real uvicorn and redis-server in tests/integration/test_service_hardening.py."""
import asyncio
import json
import subprocess
import sys

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

    app, scope, receive, send, got, sent = _limits_app(RequestLimits(4, 5.0), [
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
