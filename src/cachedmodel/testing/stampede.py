"""Stampedes for tests and benchmarks: many concurrent identical requests in several processes, and a hot
key's expiry under stale-while-revalidate. Model calls are counted across processes by appending one
line per call to a file (O_APPEND writes of a few bytes are atomic)."""
from __future__ import annotations

import multiprocessing
import os
import threading
import time
from dataclasses import dataclass

from cachedmodel import RedisCachingDecorator
from cachedmodel.testing.insurance_like_model import InsuranceLikeModel, sample_input


class CountingModel(InsuranceLikeModel):
    """The insurance-like model, slowed down, appending a line to `calls_path` on every call."""

    def __init__(self, calls_path: str, delay_seconds: float, qualified_name: str = "stampede_model"):
        super().__init__(qualified_name=qualified_name, delay_seconds=delay_seconds)
        self.calls_path = calls_path

    def predict(self, data):
        descriptor = os.open(self.calls_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(descriptor, b"call\n")
        finally:
            os.close(descriptor)
        return super().predict(data)


def model_calls(calls_path: str) -> int:
    try:
        with open(calls_path, "rb") as handle:
            return handle.read().count(b"\n")
    except FileNotFoundError:
        return 0


def _worker(url: str, options: dict, threads: int, delay: float, calls_path: str, age: int, barrier, results) -> None:
    model = CountingModel(calls_path, delay)
    decorator = RedisCachingDecorator(model, url=url, prefix="stampede", **options)
    data = sample_input(age=age)
    expected = InsuranceLikeModel(qualified_name="stampede_model").predict(data)
    local = threading.Barrier(threads)
    outcomes = []
    lock = threading.Lock()

    def run():
        local.wait(30)
        started = time.monotonic()
        try:
            right = decorator.predict(data) == expected
        except Exception:  # noqa: BLE001 - a failed prediction is reported, not raised
            right = False
        with lock:
            outcomes.append((right, time.monotonic() - started))

    pool = [threading.Thread(target=run) for _ in range(threads)]
    barrier.wait(60)  # every process ready: the stampede starts at once
    [thread.start() for thread in pool]
    [thread.join(60) for thread in pool]
    decorator.close()
    results.put(outcomes)


@dataclass
class StampedeResult:
    requests: int
    wrong: int
    model_calls: int
    max_latency_s: float


def stampede(url: str, calls_path: str, processes: int = 4, threads: int = 16, delay: float = 0.3,
             age: int = 50, **options) -> StampedeResult:
    """processes x threads identical misses at once (spawned processes: nothing shared but Redis)."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes), context.Queue()
    workers = [context.Process(target=_worker, args=(url, options, threads, delay, calls_path, age, barrier, results))
               for _ in range(processes)]
    [worker.start() for worker in workers]
    outcomes = []
    try:
        for _ in workers:
            outcomes += results.get(timeout=120)
    finally:
        for worker in workers:
            worker.join(30)
            if worker.is_alive():
                worker.kill()
                worker.join(10)
    return StampedeResult(requests=len(outcomes), wrong=sum(1 for right, _ in outcomes if not right),
                          model_calls=model_calls(calls_path), max_latency_s=max(t for _, t in outcomes))
