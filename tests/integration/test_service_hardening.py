"""Hardening of the model service (issue 9), against a real uvicorn process and a real redis-server.

- one request, one Redis lookup: a miss does one GET and a hung Redis costs one timeout, not two
- unknown models are 404 on every route; every error body is {"type", "messages"}, bounded in size,
  and rejected values never reach the INFO log
- slow or huge request bodies: 408 after the body timeout, 413 above the size limit, while other
  clients keep being served (raw sockets to 127.0.0.1, bounded in count and time)
- slow request heads: 408 after the header timeout (uvicorn has none); a 413 reaches a client that is
  still uploading (lingering close), and the lingering is bounded
- the image's HEALTHCHECK command is cheap: it imports nothing of the service's heavy dependencies
"""
from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import time

import httpx
import pytest
import redis
import yaml

from cachedmodel.testing.model_service import (EXAMPLE_CONFIG, MODEL_FILES_HINT, REPO, ModelService,
                                               artifact_missing)
from cachedmodel.testing.redis_server import RedisServer, wait_until

pytestmark = pytest.mark.integration

MODEL = "insurance_charges_model"
PREDICTION = f"/api/models/{MODEL}/prediction"
BODY = {"age": 42, "sex": "female", "bmi": 27.5, "children": 2, "smoker": False, "region": "northwest"}
SOCKET_TIMEOUT = 1.0      # the decorator's Redis timeout in this module's service: large against scheduling noise
BODY_TIMEOUT = 2.0        # CACHEDMODEL_BODY_TIMEOUT_SECONDS of this module's service
HEADER_TIMEOUT = 2.0      # CACHEDMODEL_HEADER_TIMEOUT_SECONDS of this module's service
MAX_BODY = 2 * 1024 * 1024  # CACHEDMODEL_MAX_BODY_BYTES: room for the 100k-key body below
DOCKERFILE = REPO / "images" / "model-service" / "Dockerfile"


@pytest.fixture(scope="module")
def store():
    if artifact_missing():
        pytest.fail(MODEL_FILES_HINT)
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def service(store, tmp_path_factory):
    config = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    config["models"][0]["decorators"][0]["configuration"]["socket_timeout"] = SOCKET_TIMEOUT
    path = tmp_path_factory.mktemp("hardening") / "rest_config.yaml"
    path.write_text(yaml.safe_dump(config))
    svc = ModelService(config=path, env={"REDIS_URL": store.url, "CACHEDMODEL_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
                                         "CACHEDMODEL_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
                                         "CACHEDMODEL_MAX_BODY_BYTES": str(MAX_BODY)})
    try:
        svc.start()
        yield svc
    except BaseException:
        print(svc.logs())
        raise
    finally:
        svc.cleanup()


@pytest.fixture
def http(service):
    with httpx.Client(base_url=service.url, timeout=15.0) as client:
        yield client


def redis_gets(client: redis.Redis) -> int:
    return client.info("commandstats").get("cmdstat_get", {}).get("calls", 0)


def assert_error_shape(response: httpx.Response, status: int, error_type: str | None = None) -> dict:
    assert response.status_code == status, response.text[:500]
    payload = response.json()
    assert set(payload) == {"type", "messages"}, payload
    assert isinstance(payload["type"], str) and payload["messages"] and all(isinstance(m, str) for m in payload["messages"])
    if error_type is not None:
        assert payload["type"] == error_type, payload
    return payload


# ---------------------------------------------------------------- one lookup per request

def test_a_miss_does_one_redis_get_and_a_hit_one(http, store):
    """The fast path looked the key up already: the route must not ask Redis again for the same request."""
    client = redis.Redis.from_url(store.url)
    body = {**BODY, "age": 51}
    client.config_resetstat()
    miss = http.post(PREDICTION, json=body)
    assert miss.status_code == 200 and miss.headers["x-cache"] == "miss"
    assert redis_gets(client) == 1
    assert client.info("commandstats")["cmdstat_set"]["calls"] == 1  # and the miss was stored
    hit = http.post(PREDICTION, json=body)
    assert hit.headers["x-cache"] == "hit" and hit.json() == miss.json()
    assert redis_gets(client) == 2


def test_a_hung_redis_costs_one_timeout_per_request(http, store):
    """A stopped (SIGSTOP) redis-server accepts connections and never answers: the worst case."""
    warm = {**BODY, "age": 52}
    assert http.post(PREDICTION, json=warm).headers["x-cache"] == "miss"  # pooled connections, sync side
    assert http.post(PREDICTION, json=warm).headers["x-cache"] == "hit"   # and async side
    expected = http.post(PREDICTION, json={**BODY, "age": 53})
    os.kill(store.process.pid, signal.SIGSTOP)
    try:
        started = time.perf_counter()
        answer = http.post(PREDICTION, json={**BODY, "age": 53, "children": 3})
        elapsed = time.perf_counter() - started
    finally:
        os.kill(store.process.pid, signal.SIGCONT)
    assert answer.status_code == 200 and answer.json()["charges"] != expected.json()["charges"]
    assert SOCKET_TIMEOUT * 0.9 <= elapsed < SOCKET_TIMEOUT * 1.9, f"{elapsed:.3f}s: not one {SOCKET_TIMEOUT}s timeout"
    client = redis.Redis.from_url(store.url, socket_timeout=5)
    wait_until(lambda: client.ping(), 10, what="redis-server to answer after SIGCONT")


# ---------------------------------------------------------------- errors: 404s, one shape, bounded, not logged

def test_metadata_of_an_unknown_model_is_404_naming_it(http):
    assert http.get(f"/api/models/{MODEL}/metadata").status_code == 200
    payload = assert_error_shape(http.get("/api/models/no_such_model/metadata"), 404, "NotFound")
    assert any("no_such_model" in message for message in payload["messages"]), payload
    assert any(MODEL in message for message in payload["messages"]), payload  # says which models there are
    documented = http.get("/openapi.json").json()["paths"]["/api/models/{model_qualified_name}/metadata"]["get"]
    assert {"200", "404"} <= set(documented["responses"])
    # 500 stays documented (any route can fail unexpectedly: issue 15), but not as the unknown-model answer
    assert "NotFound" in documented["responses"]["404"]["description"]
    assert "unexpected" in documented["responses"]["500"]["description"]


@pytest.mark.parametrize("method, path, status", [
    ("POST", "/api/models/no_such_model/prediction", 404),
    ("GET", "/no/such/route", 404),
    ("GET", PREDICTION, 405),
])
def test_routing_errors_have_the_error_shape(http, method, path, status):
    assert_error_shape(http.request(method, path), status)


@pytest.mark.parametrize("body, named", [
    (b'{"age": 42, "sex": "f\xffmale"}', "UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "nested"),
    (b'{"age": ' + b"9" * 100_000 + b"}", "digits"),
], ids=["non-utf8", "100k-nested-arrays", "100k-digit-integer"])
def test_unparseable_bodies_get_the_error_shape(http, body, named):
    payload = assert_error_shape(http.post(PREDICTION, content=body, headers={"content-type": "application/json"}),
                                 400, "MalformedJSON")
    assert any(named in message for message in payload["messages"]), payload
    assert len(json.dumps(payload)) < 1000


def test_error_messages_are_bounded_and_say_how_many_were_left_out(http, service):
    log_before = len(service.logs())
    body = "{" + ",".join(f'"k{i}":0' for i in range(100_000)) + "}"
    response = http.post(PREDICTION, content=body, headers={"content-type": "application/json"})
    payload = assert_error_shape(response, 400, "ValidationError")
    assert len(response.content) < 8_000, len(response.content)
    *shown, last = payload["messages"]
    left_out = re.fullmatch(r"\.\.\. and (\d+) more", last)
    assert len(shown) <= 20 and left_out, payload["messages"][-3:]
    assert len(shown) + int(left_out.group(1)) == 100_000 + 6  # every unknown key and the 6 missing fields
    long_key = http.post(PREDICTION, json={**BODY, "x" * 50_000: 1})
    assert len(long_key.content) < 2_000
    assert len(service.logs()) - log_before < 4_000  # no megabyte log lines


def test_rejected_values_stay_out_of_the_info_log(http, service):
    secret = "s3cr3t-value-7f2a"
    response = http.post(PREDICTION, json={**BODY, "sex": secret, secret + "-key": 1})
    assert_error_shape(response, 400, "ValidationError")
    wait_until(lambda: "rejected POST" in service.logs(), 10, what="the rejection to be logged")
    assert secret not in service.logs()


def test_a_bug_in_an_input_validator_is_a_500_in_the_error_shape(store, tmp_path):
    """A TypeError from the input schema escapes pydantic: the fast path must hand it to the route, and
    the route's 500 must have the error shape (not uvicorn's plain-text crash page)."""
    config = tmp_path / "rest_config.yaml"
    config.write_text(yaml.safe_dump({"models": [{
        "class_path": "tests.support.hostile_models.BuggyValidatorModel", "create_endpoint": True,
        "decorators": [{"class_path": "cachedmodel.RedisCachingDecorator", "configuration": {"url": store.url}}]}]}))
    with ModelService(config=config) as svc, httpx.Client(base_url=svc.url, timeout=10.0) as client:
        assert client.post("/api/models/buggy_validator_model/prediction", json={"value": 2}).json() == {"doubled": 4}
        payload = assert_error_shape(client.post("/api/models/buggy_validator_model/prediction", json={"value": 13}),
                                     500, "ServiceError")
        assert "unlucky" not in json.dumps(payload)  # internals stay in the log
        assert client.get("/api/health").status_code == 200


# ---------------------------------------------------------------- slow and huge bodies

def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _head(length: int | None = None, extra: str = "") -> bytes:
    size = f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
    return (f"POST {PREDICTION} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{size}{extra}"
            f"\r\n").encode()


def _read_response(sock: socket.socket, timeout: float) -> tuple[int, dict]:
    """Status and JSON body of one response (raises socket.timeout when none comes in time)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", 0))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), (json.loads(body[:length]) if length else None)


def test_slow_senders_get_408_while_other_clients_are_served(service, http):
    """100 clients dripping one byte a second: each gets 408 after the body timeout; meanwhile the service
    answers probes and predictions as usual."""
    count, declared = 100, 1000
    socks = [_connect(service.port) for _ in range(count)]
    answered: dict[socket.socket, tuple[int, dict, float]] = {}
    try:
        started = time.monotonic()
        for sock in socks:
            sock.sendall(_head(declared) + b"{")
        deadline = started + BODY_TIMEOUT + 4.0
        next_drip = started + 1.0
        checked_others = False
        while len(answered) < count and time.monotonic() < deadline:
            pending = [s for s in socks if s not in answered]
            readable, _, _ = select.select(pending, [], [], 0.1)
            for sock in readable:
                status, payload = _read_response(sock, 2.0)
                answered[sock] = (status, payload, time.monotonic() - started)
            if time.monotonic() >= next_drip:
                next_drip += 1.0
                for sock in pending:
                    if sock not in answered:
                        try:
                            sock.send(b" ")
                        except OSError:
                            pass
            if not checked_others and time.monotonic() - started > 1.0:
                checked_others = True
                t = time.monotonic()
                assert http.get("/api/health/ready", timeout=3).status_code == 200
                assert http.post(PREDICTION, json={**BODY, "age": 61}, timeout=3).status_code == 200
                assert time.monotonic() - t < 3.0
        assert checked_others
        assert len(answered) == count, f"{count - len(answered)} slow clients still held after {deadline - started:.1f}s"
        for status, payload, after in answered.values():
            assert status == 408 and set(payload) == {"type", "messages"} and payload["type"] == "RequestTimeout"
            assert BODY_TIMEOUT * 0.9 <= after < BODY_TIMEOUT + 4.0
    finally:
        for sock in socks:
            sock.close()


def test_a_body_over_the_limit_is_413_without_being_read(service, http):
    """Declared too large: refused at once (no 100-continue, nothing read); chunked: refused once over."""
    with _connect(service.port) as sock:
        sock.sendall(_head(50_000_000, extra="Expect: 100-continue\r\n"))
        status, payload = _read_response(sock, 3.0)
        assert status == 413 and payload["type"] == "ContentTooLarge" and str(MAX_BODY) in payload["messages"][0]
    with _connect(service.port) as sock:
        sock.sendall(_head(50_000_000) + b"[" * 65536)
        assert _read_response(sock, 3.0)[0] == 413
    with _connect(service.port) as sock:
        sock.sendall(_head(None))
        chunk = b"[" * 65536
        status = None
        for _ in range(MAX_BODY // len(chunk) + 8):
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                break  # refused and closed while we were still sending
            if select.select([sock], [], [], 0)[0]:
                break
        status, payload = _read_response(sock, 3.0)
        assert status == 413 and set(payload) == {"type", "messages"}
    assert http.post(PREDICTION, json=BODY).status_code == 200  # the service carries on


def _stays_open(sock: socket.socket, seconds: float) -> bool:
    """Watch the connection for `seconds`: False as soon as the server sends or closes anything, True when
    the deadline passes with it silent and open (the wait is the condition under test, not a pause)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if select.select([sock], [], [], left)[0]:
            return False
    return True


def _closed(sock: socket.socket) -> bool:
    """True when the server closed the connection (EOF or reset); reads and drops what is pending."""
    try:
        while select.select([sock], [], [], 0)[0]:
            if not sock.recv(65536):
                return True
    except OSError:
        return True
    return False


def test_a_head_sent_a_byte_at_a_time_is_cut_at_the_header_timeout(service, http):
    """Slowloris: the request line and headers at one byte per 0.5 s. uvicorn alone waits as long as the
    bytes keep coming; the service answers 408 and closes once HEADER_TIMEOUT has passed. A slow body at the
    same time still gets the body timeout's 408, and a normal request is served meanwhile."""
    head = _head(len(json.dumps(BODY)))
    with _connect(service.port) as slow_head, _connect(service.port) as slow_body:
        started = time.monotonic()
        slow_body.sendall(head + b"{")
        sent, answer = 0, None
        while time.monotonic() - started < HEADER_TIMEOUT + 3.0 and answer is None:
            try:
                slow_head.send(head[sent:sent + 1])
                sent += 1
            except OSError:
                break  # closed (it may come as a reset while we send)
            if select.select([slow_head], [], [], 0.5)[0]:
                answer = _read_response(slow_head, 2.0)
        after = time.monotonic() - started
        assert answer is not None, f"the head was still being read after {after:.1f}s ({sent} bytes sent)"
        status, payload = answer
        assert status == 408 and payload["type"] == "RequestTimeout" and "headers" in payload["messages"][0]
        assert HEADER_TIMEOUT * 0.9 <= after < HEADER_TIMEOUT + 2.0 and sent < len(head)
        wait_until(lambda: _closed(slow_head), 2, interval=0.05, what="the connection to be closed after the 408")
        assert http.post(PREDICTION, json=BODY).status_code == 200  # others are served as before
        status, payload = _read_response(slow_body, BODY_TIMEOUT + 2.0)
        assert status == 408 and "body" in payload["messages"][0]


def test_the_header_timeout_counts_neither_keep_alive_idleness_nor_the_body(service):
    """A keep-alive connection idle for longer than the header timeout (shorter than uvicorn's 5 s keep-alive)
    serves its next request; a body that comes within the body timeout is read, whatever the header timeout."""
    body = json.dumps(BODY).encode()
    with _connect(service.port) as sock:
        sock.sendall(_head(len(body)) + body)
        assert _read_response(sock, 10.0)[0] == 200
        assert _stays_open(sock, HEADER_TIMEOUT + 0.5), "an idle keep-alive connection was cut by the header timeout"
        sock.sendall(_head(len(body)) + body[:10])
        assert _stays_open(sock, min(HEADER_TIMEOUT, BODY_TIMEOUT) * 0.75), "a body within its timeout was cut"
        sock.sendall(body[10:])
        status, payload = _read_response(sock, 10.0)
        assert status == 200 and "charges" in payload


UPLOAD = 8 * 1024 * 1024  # 4 x MAX_BODY, more than loopback buffers take in; the lingering bound (8 MiB)


def _upload(sock: socket.socket, head: bytes, size: int, chunked: bool = False) -> None:
    """Send a head and `size` bytes of body in 64 KiB pieces, as a client does that reads no answer before
    it has sent its request (raises OSError if the server cuts the upload)."""
    sock.sendall(head)
    piece = b" " * 65536
    for _ in range(size // len(piece)):
        sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
    if chunked:
        sock.sendall(b"0\r\n\r\n")


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_client_uploading_too_much_reads_its_413_instead_of_a_reset(service, chunked):
    """The service answers 413 before (Content-Length) or while (chunked) the body arrives. It used to
    close at once, so a client still uploading got a broken pipe or a reset mid-upload and never read the
    answer. Now it reads (and drops) the rest of the upload before it closes, as nginx's lingering close."""
    with _connect(service.port) as sock:
        _upload(sock, _head(None if chunked else UPLOAD), UPLOAD, chunked)
        status, payload = _read_response(sock, 5.0)
        assert status == 413 and payload["type"] == "ContentTooLarge" and str(MAX_BODY) in payload["messages"][0]
        wait_until(lambda: _closed(sock), 5, interval=0.05, what="the connection to be closed after the 413")
    body = b"[" + b"0," * (UPLOAD // 2) + b"0]"  # a client library, the ordinary way
    with httpx.Client(base_url=service.url, timeout=15.0) as client:
        response = client.post(PREDICTION, content=iter([body]) if chunked else body,
                               headers={"content-type": "application/json"})
        assert response.status_code == 413 and response.json()["type"] == "ContentTooLarge"


def test_a_client_that_keeps_uploading_is_cut_after_the_lingering_bound(service, http):
    """After the 413 the service reads on only so long (2 s) and so much (8 MiB): a client that never stops
    sending is cut, slow or fast."""
    piece = b"%x\r\n%s\r\n" % (1024, b" " * 1024)
    with _connect(service.port) as slow, _connect(service.port) as fast:
        slow.sendall(_head(None))
        fast.sendall(_head(None))
        started, answered, slow_cut, fast_cut, fast_sent = time.monotonic(), None, None, None, 0
        while time.monotonic() - started < 15 and (slow_cut is None or fast_cut is None):
            if slow_cut is None:
                try:
                    slow.sendall(piece * 256)  # 256 KiB every 0.1 s: over MAX_BODY within a second
                except OSError:
                    slow_cut = time.monotonic()
                if answered is None and select.select([slow], [], [], 0)[0]:
                    answered = (time.monotonic(), _read_response(slow, 2.0))
                elif answered is not None and slow_cut is None and _closed(slow):
                    slow_cut = time.monotonic()
            if fast_cut is None:
                try:
                    for _ in range(64):
                        fast.sendall(piece * 64)
                        fast_sent += 64 * len(piece)
                except OSError:
                    fast_cut = time.monotonic()
                else:
                    if _closed(fast):
                        fast_cut = time.monotonic()
            select.select([slow], [], [], 0.1)  # the slow sender's pace; wakes at once for the 413 or the cut
        assert answered is not None and answered[1][0] == 413
        assert slow_cut is not None and 1.5 <= slow_cut - answered[0] < 5.0, "cut by the 2 s bound"
        assert fast_cut is not None and fast_sent < 64 * 1024 * 1024, "cut by the 8 MiB bound"
    assert http.post(PREDICTION, json=BODY).status_code == 200


# ---------------------------------------------------------------- the image's HEALTHCHECK

HEAVY = ("cachedmodel", "pydantic", "redis", "fastapi", "starlette", "ml_base", "rest_model_service", "yaml",
         "uvicorn", "prometheus_client")


def _healthcheck_command() -> list[str]:
    from tests.integration.test_service_image import image_contract, local_command
    return local_command(image_contract(DOCKERFILE)["healthcheck"])


def test_healthcheck_imports_nothing_heavy_and_works_against_the_service(service):
    command = _healthcheck_command()
    result = subprocess.run([command[0], "-X", "importtime", *command[1:]], env={**os.environ, "PORT": str(service.port)},
                            capture_output=True, text=True, timeout=30, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")]
    heavy = sorted({name for name in imported if name.split(".")[0] in HEAVY})
    assert not heavy, heavy
    assert "socket" in imported  # it did run the probe
    down = subprocess.run(command, env={**os.environ, "PORT": "1"}, capture_output=True, text=True, timeout=30)
    assert down.returncode == 1 and "probe:" in down.stderr


# ---------------------------------------------------------------- draining on SIGTERM

def test_sigterm_drains_keep_alive_clients_before_closing(store, tmp_path):
    """On a rollout the pod gets SIGTERM while keep-alive clients still hold connections to it (through a
    Service, a connection stays with its pod). Closing them at once made a request sent at that moment fail
    ("Server disconnected without sending a response": 1 of 18,110 requests on real pods during an epoch
    bump). Now the service keeps answering for CACHEDMODEL_DRAIN_SECONDS, each answer with
    `connection: close`, so the client reconnects elsewhere after an answer; then it stops."""
    import signal

    drain = 3.0
    with ModelService(config=EXAMPLE_CONFIG, env={"REDIS_URL": store.url,
                                                  "CACHEDMODEL_DRAIN_SECONDS": str(drain)}) as svc:
        with httpx.Client(base_url=svc.url, timeout=10.0) as client:
            assert client.post(PREDICTION, json=BODY).status_code == 200  # a kept-alive connection
            svc.process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            answers = []
            while time.monotonic() - signalled < drain * 0.6:
                response = client.post(PREDICTION, json=BODY)
                answers.append((response.status_code, response.headers.get("connection")))
            assert answers and all(status == 200 for status, _ in answers), answers
            assert all(connection == "close" for _, connection in answers), answers
        wait_until(lambda: svc.process.poll() is not None, drain + 15, what="the service to exit after draining")
        assert time.monotonic() - signalled >= drain * 0.9, "it stopped before the drain was over"
