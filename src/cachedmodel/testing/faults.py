"""The Redis fault matrix: HTTP load against the model service while Redis misbehaves, for tests and benchmarks.

`run_fault(fault, service, redis_port, ...)` starts a fresh redis-server on `redis_port` (the port
the service's REDIS_URL names), warms the cache until every body is a hit, runs a bounded load (a
few threads, each with its own keep-alive HTTP client, POSTing a fixed set of distinct bodies in a
loop), injects the fault, undoes it, and keeps the load going until every body has been answered
`x-cache: hit` again by a request that started after the fault ended (or the recovery bound passed).
Every 200 answer is compared with the model's own answer for its body, computed in-process. The
result counts requests, non-200 answers (transport errors included), wrong answers, the slowest
request, the seconds from the fault's end to the first hit and to hits on every body, and the
cache error counters the service's /metrics added during the run.

This module talks to Redis over raw RESP sockets (only cachedmodel.backend imports redis) and
sends traffic only to 127.0.0.1. Loads stop by themselves: at a hard deadline and a request cap.
"""
from __future__ import annotations

import functools
import os
import re
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import httpx
import yaml

from cachedmodel.testing.model_service import EXAMPLE_CONFIG, MODEL_NAME, ModelService
from cachedmodel.testing.processes import wait_until
from cachedmodel.testing.redis_server import RedisServer

PREDICTION_PATH = f"/api/models/{MODEL_NAME}/prediction"
BODY_COUNT = 50
CLIENTS = 4
PRE_FAULT_S = 1.0          # load before the fault: steady hits
POST_RECOVERY_S = 0.5      # load after every body hit again
RECOVERY_BOUND_S = 30.0    # hits must be back on every body within this many seconds of the fault's end
LATENCY_BOUND_S = 5.0      # no single request may take longer (a dead Redis must not add its timeout to each)
REQUEST_CAP = 40_000       # per client thread: loads are bounded in count as well as in time
ERROR_KINDS = ("connection", "timeout", "oom", "response", "auth", "decode", "encode", "other")


# ---------------------------------------------------------------- bodies and the true answers
def fault_bodies(count: int = BODY_COUNT, seed: int = 29) -> list[dict]:
    """`count` distinct request bodies (seeded, so every run sends the same ones)."""
    from insurance_charges_model.workload import workload

    bodies, seen = [], set()
    for body in workload(count * 3, repeat_share=0.0, seed=seed):
        marker = tuple(sorted(body.items()))
        if marker not in seen:
            seen.add(marker)
            bodies.append(body)
        if len(bodies) == count:
            return bodies
    raise RuntimeError(f"the workload gave fewer than {count} distinct bodies")


@functools.lru_cache(maxsize=1)
def _model():
    from insurance_charges_model.model import InsuranceChargesModel

    return InsuranceChargesModel()


def expected_answers(bodies: list[dict]) -> list[dict]:
    """The model's own answer for each body, in-process, as the service's JSON would carry it."""
    model = _model()
    return [model.predict(body).model_dump() for body in bodies]


def cache_keys(bodies: list[dict], port: int) -> list[str]:
    """The Redis keys the service uses for `bodies`: the decorator's public cache_key, built with the
    example config's decorator options (the ones the service runs with)."""
    from cachedmodel import RedisCachingDecorator

    configuration = dict(yaml.safe_load(EXAMPLE_CONFIG.read_text())["models"][0]["decorators"][0]["configuration"])
    configuration.update(url=f"redis://127.0.0.1:{port}/0", password="")
    decorator = RedisCachingDecorator(_model(), **configuration)
    try:
        return [decorator.cache_key(body) for body in bodies]
    finally:
        decorator.close()


# ---------------------------------------------------------------- a minimal RESP client (admin commands)
class RespError(Exception):
    """An error reply (-ERR ...) from Redis."""


class Resp:
    """One RESP2 connection to 127.0.0.1:`port` for admin commands; replies parsed into Python values."""

    def __init__(self, port: int, password: str | None = None, timeout: float = 5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.reader = self.sock.makefile("rb")
        if password:
            self.command("AUTH", password)

    def command(self, *args: Any) -> Any:
        parts = [arg if isinstance(arg, bytes) else str(arg).encode() for arg in args]
        self.sock.sendall(b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts))
        return self._reply()

    def _reply(self) -> Any:
        line = self.reader.readline()
        if not line:
            raise ConnectionError("Redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RespError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            data = self.reader.read(size + 2)
            return data[:-2]
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self._reply() for _ in range(size)]
        raise ConnectionError(f"unexpected RESP reply {line!r}")

    def close(self) -> None:
        try:
            self.reader.close()
        finally:
            self.sock.close()

    def __enter__(self) -> "Resp":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------- the load
@dataclass
class Load:
    """CLIENTS threads POSTing `bodies` in a loop until stop(), the deadline or REQUEST_CAP."""

    base_url: str
    bodies: list[dict]
    expected: list[dict]
    clients: int = CLIENTS
    max_seconds: float = 60.0
    requests: int = 0
    non_200: int = 0
    wrong: int = 0
    max_latency_s: float = 0.0
    latencies: list = field(default_factory=list)
    problems: list = field(default_factory=list)      # the first few failures, for the report
    mark: float | None = None                         # monotonic time the fault ended
    first_hit_after_mark: dict = field(default_factory=dict)  # body index -> monotonic end of its first hit
    responses_after_start: list = field(default_factory=list)  # (started, hit) of every request
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list = field(default_factory=list)

    def start(self) -> "Load":
        self._deadline = time.monotonic() + self.max_seconds
        payloads = [httpx.Request("POST", "http://x", json=body).content for body in self.bodies]
        for index in range(self.clients):
            thread = threading.Thread(target=self._run, args=(index, payloads), daemon=True,
                                      name=f"fault-load-{index}")
            thread.start()
            self._threads.append(thread)
        return self

    def _run(self, index: int, payloads: list[bytes]) -> None:
        count = len(payloads)
        position = index * (count // max(1, self.clients))
        headers = {"content-type": "application/json"}
        with httpx.Client(base_url=self.base_url, timeout=LATENCY_BOUND_S * 3) as http:
            for _ in range(REQUEST_CAP):
                if self._stop.is_set() or time.monotonic() >= self._deadline:
                    return
                body_index = position % count
                position += 1
                started = time.monotonic()
                status, hit, answer, problem = 0, False, None, None
                try:
                    response = http.post(PREDICTION_PATH, content=payloads[body_index], headers=headers)
                    status = response.status_code
                    hit = response.headers.get("x-cache") == "hit"
                    if status == 200:
                        answer = response.json()
                    else:
                        problem = f"HTTP {status}: {response.text[:200]}"
                except Exception as error:  # noqa: BLE001 - a transport failure is a failed prediction
                    problem = f"{type(error).__name__}: {error}"
                ended = time.monotonic()
                self._record(body_index, started, ended, status, hit, answer, problem)

    def _record(self, body_index, started, ended, status, hit, answer, problem) -> None:
        latency = ended - started
        wrong = status == 200 and answer != self.expected[body_index]
        if wrong:
            problem = f"wrong answer for body {body_index}: {answer} instead of {self.expected[body_index]}"
        with self._lock:
            self.requests += 1
            self.latencies.append(latency)
            self.max_latency_s = max(self.max_latency_s, latency)
            self.responses_after_start.append((started, hit))
            if status != 200:
                self.non_200 += 1
            if wrong:
                self.wrong += 1
            if problem and len(self.problems) < 10:
                self.problems.append(problem)
            mark = self.mark
            if hit and mark is not None and started >= mark and body_index not in self.first_hit_after_mark:
                self.first_hit_after_mark[body_index] = ended

    def mark_fault_end(self) -> float:
        with self._lock:
            self.mark = time.monotonic()
            return self.mark

    def all_hit_again(self) -> bool:
        return len(self.first_hit_after_mark) == len(self.bodies)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=LATENCY_BOUND_S * 3 + 5)


# ---------------------------------------------------------------- the faults
@dataclass
class FaultContext:
    server: RedisServer
    keys: list[str]
    admin: Resp | None = None
    notes: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Fault:
    name: str
    description: str
    inject: Callable[[FaultContext], None]
    recover: Callable[[FaultContext], None]
    hold_s: float                      # how long the fault lasts between inject and recover
    counted: tuple[str, ...] = ()      # error kinds that must have been counted (proof the fault bit)


def _kill(ctx: FaultContext) -> None:
    ctx.server.kill()


def _start_again(ctx: FaultContext) -> None:
    ctx.server.start()


def _shutdown_nosave(ctx: FaultContext) -> None:
    with Resp(ctx.server.port) as admin:
        try:
            admin.command("SHUTDOWN", "NOSAVE")
        except (ConnectionError, OSError):
            pass  # the server closes the connection instead of answering
    ctx.server.process.wait(timeout=10)


def _sigstop(ctx: FaultContext) -> None:
    os.kill(ctx.server.process.pid, signal.SIGSTOP)


def _sigcont(ctx: FaultContext) -> None:
    os.kill(ctx.server.process.pid, signal.SIGCONT)


def _client_pause(ctx: FaultContext) -> None:
    ctx.admin = Resp(ctx.server.port)
    ctx.admin.command("CLIENT", "PAUSE", "2000", "ALL")


def _pause_over(ctx: FaultContext) -> None:
    """The pause ends by itself: PING (postponed like every command, this connection's too) answers then."""
    ctx.admin.command("PING")


def _fill(ctx: FaultContext) -> None:
    """Full under noeviction: the entries are gone (someone else's data filled the memory) and every SET
    answers OOM; reads still work."""
    ctx.admin = Resp(ctx.server.port)
    ctx.admin.command("FLUSHALL")
    ctx.admin.command("CONFIG", "SET", "maxmemory-policy", "noeviction")
    ctx.admin.command("CONFIG", "SET", "maxmemory", "1")
    try:
        ctx.admin.command("SET", "fault:probe", "x")
        raise RuntimeError("Redis accepted a SET with maxmemory 1: the OOM fault did not take")
    except RespError as error:
        if not str(error).startswith("OOM"):
            raise


def _unfill(ctx: FaultContext) -> None:
    ctx.admin.command("CONFIG", "SET", "maxmemory", "0")


# Foreign values: none of them is an entry the decorator writes. Type-confused ones that the output
# schema's lax validation would accept as a number ([true], ["123.45"], [123]) are not here: they are
# well-formed entries of our format, as undetectable as any entry holding a wrong number.
GARBAGE_VALUES: tuple[bytes, ...] = (
    b"\x00\xffnot a cache entry\xfe",                        # random bytes
    b"",                                                     # empty string
    b'{"charges": 1.0}',                                     # JSON without a marker
    b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x07charges\x94K\x01s.",  # a pickle: never unpickled
    b"\x10[1.0]",                                            # a JSON-serder entry under a MessagePack key
    b"\x13\x05\x10\x91\xcb?\xf0",                            # marker of compressed MessagePack (other options)
    b"\x11\x92\xcb?\xf0\x00\x00\x00\x00\x00\x00\xcb@\x00\x00\x00\x00\x00\x00\x00",  # two fields, schema has one
    b"\x11\x91\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00",         # NaN
    b"\x11\x91\xa3nan",                                      # "nan": lax float validation makes it NaN
    b"\x11\x91\xa4-inf",                                     # "-inf"
    b"\x11\x91\xc0",                                         # [nil]
    b"\x11\x91\x81\xa7charges\x01",                          # [{"charges": 1}]
    b"\x11\xa7charges",                                      # not a list
)


def _write_garbage(ctx: FaultContext) -> None:
    with Resp(ctx.server.port) as admin:
        present = sum(admin.command("EXISTS", key) for key in ctx.keys)
        if present != len(ctx.keys):  # the keys computed in-process are the service's keys
            raise RuntimeError(f"only {present} of {len(ctx.keys)} computed cache keys exist in Redis")
        for index, key in enumerate(ctx.keys):
            choice = index % (len(GARBAGE_VALUES) + 2)
            if choice < len(GARBAGE_VALUES):
                admin.command("SET", key, GARBAGE_VALUES[choice])
            elif choice == len(GARBAGE_VALUES):  # another Redis type under the key: GET answers WRONGTYPE
                admin.command("DEL", key)
                admin.command("RPUSH", key, "a", "b")
            else:
                admin.command("DEL", key)
                admin.command("HSET", key, "charges", "1.0")


def _nothing(ctx: FaultContext) -> None:
    pass


PASSWORD = "changed-under-the-service"


def _change_password(ctx: FaultContext) -> None:
    """The service has no password: after requirepass and dropping its connections, every new
    connection gets NOAUTH."""
    ctx.admin = Resp(ctx.server.port)
    ctx.admin.command("CONFIG", "SET", "requirepass", PASSWORD)
    ctx.notes["killed_clients"] = ctx.admin.command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")


def _password_back(ctx: FaultContext) -> None:
    ctx.admin.command("CONFIG", "SET", "requirepass", "")


def _exhaust_clients(ctx: FaultContext) -> None:
    """maxclients 1 (this admin connection) and the service's connections dropped: every reconnect is
    refused with 'max number of clients reached'."""
    ctx.admin = Resp(ctx.server.port)
    ctx.notes["maxclients"] = ctx.admin.command("CONFIG", "GET", "maxclients")[1].decode()
    ctx.admin.command("CONFIG", "SET", "maxclients", "1")
    ctx.notes["killed_clients"] = ctx.admin.command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")


def _clients_back(ctx: FaultContext) -> None:
    ctx.admin.command("CONFIG", "SET", "maxclients", ctx.notes["maxclients"])


FAULTS: tuple[Fault, ...] = (
    Fault("kill", "SIGKILL mid-load, down 2 s, restarted on the same port (empty)", _kill, _start_again, 2.0,
          counted=("connection",)),
    Fault("clean_restart", "SHUTDOWN NOSAVE, then started again on the same port (empty)", _shutdown_nosave,
          _start_again, 0.0),
    Fault("hang", "SIGSTOP for 3 s (connections accepted, never answered), then SIGCONT", _sigstop, _sigcont,
          3.0, counted=("timeout",)),
    Fault("client_pause", "CLIENT PAUSE 2000 ALL (every command waits 2 s)", _client_pause, _pause_over, 0.0,
          counted=("timeout",)),
    Fault("oom", "FLUSHALL, maxmemory 1 B under noeviction for 3 s (every SET: OOM), then maxmemory 0",
          _fill, _unfill, 3.0, counted=("oom",)),
    Fault("garbage", f"every entry overwritten with foreign values ({len(GARBAGE_VALUES)} byte strings, "
          "a list, a hash)", _write_garbage, _nothing, 0.0, counted=("decode", "response")),
    Fault("password", "requirepass set and clients dropped for 3 s (NOAUTH), then cleared", _change_password,
          _password_back, 3.0, counted=("auth",)),
    Fault("maxclients", "maxclients 1 and clients dropped for 3 s (connections refused), then restored",
          _exhaust_clients, _clients_back, 3.0, counted=("connection",)),
)
FAULTS_BY_NAME = {fault.name: fault for fault in FAULTS}


# ---------------------------------------------------------------- running one fault
def service_errors(service: ModelService) -> dict[str, float]:
    """cachedmodel_cache_errors_total by kind, from the service's /metrics."""
    text = httpx.get(service.url + "/metrics", timeout=10.0).text
    found = dict.fromkeys(ERROR_KINDS, 0.0)
    for line in text.splitlines():
        if line.startswith("cachedmodel_cache_errors_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("} ")[0]))
            if labels.get("model") == MODEL_NAME and labels.get("kind") in found:
                found[labels["kind"]] += float(line.rsplit(" ", 1)[1])
    return found


def cache_accounting(service: ModelService, model: str = MODEL_NAME) -> dict:
    """The service's cache counters for `model`: requests, hits (all tiers), misses, bypasses (all
    reasons), and whether they balance (requests == hits + misses + bypasses; read it while idle)."""
    text = httpx.get(service.url + "/metrics", timeout=10.0).text
    sums = {"requests": 0.0, "hits": 0.0, "misses": 0.0, "bypasses": 0.0}
    names = {"cachedmodel_cache_requests_total": "requests", "cachedmodel_cache_hits_total": "hits",
             "cachedmodel_cache_misses_total": "misses", "cachedmodel_cache_bypass_total": "bypasses"}
    for line in text.splitlines():
        name, _, rest = line.partition("{")
        if name in names and f'model="{model}"' in rest:
            sums[names[name]] += float(line.rsplit(" ", 1)[1])
    counts = {key: int(value) for key, value in sums.items()}
    counts["balanced"] = counts["requests"] == counts["hits"] + counts["misses"] + counts["bypasses"] \
        and counts["requests"] > 0
    return counts


def warm_up(service: ModelService, bodies: list[dict], timeout: float = 60.0) -> None:
    """Until one pass over the bodies is all hits (so the fault starts from a warm cache, circuit closed)."""
    with httpx.Client(base_url=service.url, timeout=10.0) as http:
        def all_hits() -> bool:
            hits = [http.post(PREDICTION_PATH, json=body).headers.get("x-cache") == "hit" for body in bodies]
            return all(hits)
        wait_until(all_hits, timeout=timeout, interval=0.1, what="every body to be a cache hit before the fault")


def run_fault(fault: Fault, service: ModelService, redis_port: int, bodies: list[dict], expected: list[dict],
              keys: list[str], recovery_bound_s: float = RECOVERY_BOUND_S) -> dict:
    """One fault against a fresh redis-server on `redis_port` under load; returns the result row."""
    server = RedisServer(port=redis_port)
    server.start()
    ctx = FaultContext(server=server, keys=keys)
    load = None
    try:
        warm_up(service, bodies)
        errors_before = service_errors(service)
        max_seconds = PRE_FAULT_S + fault.hold_s + recovery_bound_s + POST_RECOVERY_S + 15
        load = Load(service.url, bodies, expected, max_seconds=max_seconds).start()
        time.sleep(PRE_FAULT_S)  # steady load on a warm cache before the fault (a fixed phase, not a wait)
        injected = time.monotonic()
        fault.inject(ctx)
        if fault.hold_s:
            time.sleep(max(0.0, injected + fault.hold_s - time.monotonic()))  # the fault's length
        fault.recover(ctx)
        fault_end = load.mark_fault_end()
        recovered = True
        try:
            wait_until(load.all_hit_again, timeout=recovery_bound_s, interval=0.02,
                       what=f"hits on every body after the {fault.name} fault")
        except TimeoutError:
            recovered = False
        time.sleep(POST_RECOVERY_S)
        load.stop()
        errors_after = service_errors(service)
        accounting = cache_accounting(service)
    finally:
        if load is not None:
            load.stop()
        if server.process is not None and server.process.poll() is None:
            try:
                os.kill(server.process.pid, signal.SIGCONT)  # a stopped server cannot terminate
            except ProcessLookupError:
                pass
        if ctx.admin is not None:
            try:
                ctx.admin.close()
            except OSError:
                pass
        server.stop()
    hit_times = sorted(load.first_hit_after_mark.values())
    during = [hit for started, hit in load.responses_after_start if injected <= started < fault_end]
    latencies = sorted(load.latencies)
    counted = {kind: int(errors_after[kind] - errors_before[kind]) for kind in ERROR_KINDS
               if errors_after[kind] - errors_before[kind]}
    return {
        "fault": fault.name, "description": fault.description, "hold_s": fault.hold_s,
        "requests": load.requests, "non_200": load.non_200, "wrong": load.wrong,
        "max_latency_ms": round(load.max_latency_s * 1000, 1),
        "p99_latency_ms": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000, 1)
        if latencies else None,
        "hit_share_during_fault": round(sum(during) / len(during), 3) if during else None,
        "first_hit_s": round(hit_times[0] - fault_end, 2) if hit_times else None,
        "all_hits_s": round(hit_times[-1] - fault_end, 2) if recovered and hit_times else None,
        "errors_counted": counted, "expected_kinds": list(fault.counted), "problems": load.problems,
        "accounting": accounting,
    }


def check(result: dict, recovery_bound_s: float = RECOVERY_BOUND_S,
          latency_bound_s: float = LATENCY_BOUND_S) -> list[str]:
    """What is wrong with a result row (empty when the fault was survived as promised)."""
    failures = []
    if result["requests"] < 100:
        failures.append(f"only {result['requests']} requests: the load did not run")
    if result["non_200"]:
        failures.append(f"{result['non_200']} requests did not get a 200: {result['problems']}")
    if result["wrong"]:
        failures.append(f"{result['wrong']} wrong answers: {result['problems']}")
    if result["max_latency_ms"] > latency_bound_s * 1000:
        failures.append(f"slowest request {result['max_latency_ms']} ms > {latency_bound_s} s")
    if result["all_hits_s"] is None:
        failures.append(f"hits did not come back on every body within {recovery_bound_s} s")
    accounting = result.get("accounting")
    if accounting is not None and not accounting["balanced"]:
        failures.append(f"cache accounting does not balance: {accounting}")
    missing = [kind for kind in result["expected_kinds"] if not result["errors_counted"].get(kind)]
    if missing:
        failures.append(f"the fault did not show: no {', '.join(missing)} errors counted "
                        f"(counted: {result['errors_counted']})")
    return failures


def run_matrix(faults: tuple[Fault, ...] = FAULTS, progress: Callable[[dict], None] | None = None) -> list[dict]:
    """Every fault in turn against one service (the example config) whose Redis is replaced per fault."""
    from cachedmodel.testing.processes import free_port

    port = free_port()
    bodies = fault_bodies()
    expected = expected_answers(bodies)
    keys = cache_keys(bodies, port)
    results = []
    service = ModelService(env={"REDIS_URL": f"redis://127.0.0.1:{port}/0"})
    bootstrap = RedisServer(port=port).start()  # the service checks nothing at start, but be kind to it
    try:
        service.start()
        bootstrap.stop()
        for fault in faults:
            result = run_fault(fault, service, port, bodies, expected, keys)
            results.append(result)
            if progress is not None:
                progress(result)
    except BaseException:
        print(service.logs()[-5000:])
        raise
    finally:
        bootstrap.stop()
        service.cleanup()
    return results
