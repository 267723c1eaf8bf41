"""Single-flight: one execution per concurrent burst of a key; errors shared and cleaned up."""
import threading

import pytest

from cachedmodel.singleflight import SingleFlight
from cachedmodel.testing.redis_server import wait_until


def run_concurrently(count, target):
    barrier = threading.Barrier(count)
    results, errors = [], []

    def worker():
        barrier.wait()
        try:
            results.append(target())
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(count)]
    [thread.start() for thread in threads]
    [thread.join(10) for thread in threads]
    return results, errors


def test_concurrent_calls_of_one_key_share_one_execution():
    flight, calls = SingleFlight(), []

    def slow():
        calls.append(1)
        wait_until(lambda: flight.waiters("k") == 31, 10, what="the other 31 callers to wait")
        return "value"

    results, errors = run_concurrently(32, lambda: flight.do("k", slow))
    assert not errors and len(calls) == 1 and len(results) == 32
    assert all(value == "value" for value, _ in results)
    assert sum(1 for _, shared in results if not shared) == 1
    assert flight.in_flight() == 0


def test_different_keys_do_not_wait_for_each_other():
    flight = SingleFlight()
    assert flight.do("a", lambda: 1) == (1, False)
    assert flight.do("b", lambda: 2) == (2, False)


def test_an_error_reaches_every_waiter_and_the_key_is_released():
    flight = SingleFlight()

    def failing():
        wait_until(lambda: flight.waiters("k") == 7, 10, what="the other 7 callers to wait")
        raise RuntimeError("model broke")

    results, errors = run_concurrently(8, lambda: flight.do("k", failing))
    assert not results and len(errors) == 8 and all(str(error) == "model broke" for error in errors)
    assert flight.in_flight() == 0
    assert flight.do("k", lambda: "again") == ("again", False)  # the next burst runs afresh


def test_sequential_calls_each_run():
    flight, calls = SingleFlight(), []
    for _ in range(3):
        flight.do("k", lambda: calls.append(1))
    assert len(calls) == 3
    with pytest.raises(KeyError):
        flight.do("k", lambda: {}["missing"])


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_result_lingers_for_late_arrivals_then_expires():
    clock, calls = Clock(), []
    flight = SingleFlight(linger_seconds=0.25, clock=clock)
    assert flight.do("k", lambda: calls.append(1) or "first") == ("first", False)
    clock.now = 0.2
    assert flight.do("k", lambda: calls.append(1) or "second") == ("first", True)  # arrived just after
    assert flight.do("other", lambda: "x") == ("x", False)
    clock.now = 0.26
    assert flight.do("k", lambda: calls.append(1) or "third") == ("third", False)
    assert len(calls) == 2
    clock.now = 10
    flight.do("z", lambda: None)
    assert flight.lingering() == 1  # expired entries are dropped, only z remains


def test_errors_do_not_linger():
    flight = SingleFlight(linger_seconds=60)
    with pytest.raises(ZeroDivisionError):
        flight.do("k", lambda: 1 / 0)
    assert flight.do("k", lambda: "ok") == ("ok", False)


def test_forget_drops_a_lingering_result():
    flight = SingleFlight(linger_seconds=60)
    flight.do("k", lambda: "old")
    flight.forget("k")
    assert flight.do("k", lambda: "new") == ("new", False)


def test_linger_if_false_does_not_linger():
    flight = SingleFlight(linger_seconds=60)
    flight.do("k", lambda: ("value", False), linger_if=lambda outcome: outcome[1])
    assert flight.do("k", lambda: ("again", True), linger_if=lambda outcome: outcome[1]) == (("again", True), False)
    assert flight.do("k", lambda: ("third", True))[1] is True  # the stored one lingers
