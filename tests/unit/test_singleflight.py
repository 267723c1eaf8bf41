"""Single-flight: one execution per concurrent burst of a key; errors shared and cleaned up."""
import threading
import time

import pytest

from cachedmodel.singleflight import SingleFlight


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
        time.sleep(0.3)
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
        time.sleep(0.3)
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
