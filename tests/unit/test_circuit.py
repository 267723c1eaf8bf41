"""Circuit breaker state machine, driven by a fake clock (pure logic, no Redis)."""
import threading

from cachedmodel.circuit import CLOSED, HALF_OPEN, OPEN, CircuitBreaker


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_opens_after_n_consecutive_failures_only():
    breaker = CircuitBreaker(3, 5.0, Clock())
    assert breaker.record_failure() is False and breaker.record_failure() is False
    breaker.record_success()  # not consecutive any more
    assert breaker.record_failure() is False and breaker.record_failure() is False
    assert breaker.state == CLOSED and breaker.allow()
    assert breaker.record_failure() is True
    assert breaker.state == OPEN and not breaker.allow()


def test_half_open_lets_exactly_one_probe_through_after_the_interval():
    clock = Clock()
    breaker = CircuitBreaker(1, 5.0, clock)
    breaker.record_failure()
    clock.now += 4.9
    assert not breaker.allow()
    clock.now += 0.2
    assert breaker.allow() and breaker.state == HALF_OPEN
    assert not breaker.allow()  # the probe is in flight: everyone else still skips Redis


def test_probe_success_closes_and_probe_failure_reopens_for_a_new_interval():
    clock = Clock()
    breaker = CircuitBreaker(2, 5.0, clock)
    breaker.record_failure(), breaker.record_failure()
    clock.now += 5
    assert breaker.allow()
    assert breaker.record_failure() is True and breaker.state == OPEN
    clock.now += 4
    assert not breaker.allow()
    clock.now += 1
    assert breaker.allow()
    assert breaker.record_success() is True and breaker.state == CLOSED and breaker.allow()
    assert breaker.record_success() is False  # no recovery to report twice
    assert breaker.record_failure() is False  # the count restarted from zero


def test_only_one_of_many_threads_probes():
    clock = Clock()
    breaker = CircuitBreaker(1, 1.0, clock)
    breaker.record_failure()
    clock.now += 1
    allowed = []
    barrier = threading.Barrier(16)

    def probe():
        barrier.wait()
        allowed.append(breaker.allow())

    threads = [threading.Thread(target=probe) for _ in range(16)]
    [thread.start() for thread in threads]
    [thread.join() for thread in threads]
    assert allowed.count(True) == 1


def test_a_probe_that_never_reports_is_replaced_after_another_interval():
    """A probe whose caller was cancelled (asyncio timeout) never records success or failure: the
    breaker must not stay half-open with that probe 'in flight' forever (the cache would be off for good)."""
    clock = Clock()
    breaker = CircuitBreaker(1, 5.0, clock)
    breaker.record_failure()
    clock.now += 5
    assert breaker.allow() and breaker.state == HALF_OPEN  # the probe starts ... and is never heard of again
    clock.now += 4.9
    assert not breaker.allow()
    clock.now += 0.2
    assert breaker.allow()  # a new probe
    assert not breaker.allow()
    assert breaker.record_success() is True and breaker.state == CLOSED


def test_a_late_success_does_not_close_an_open_circuit():
    """A call that started before the circuit opened and succeeds afterwards says nothing about Redis
    now: only the half-open probe may close the circuit."""
    clock = Clock()
    breaker = CircuitBreaker(1, 5.0, clock)
    assert breaker.record_failure() is True
    assert breaker.record_success() is False and breaker.state == OPEN
    assert not breaker.allow()  # still skipping Redis
    clock.now += 5
    assert breaker.allow() and breaker.state == HALF_OPEN
    assert breaker.record_success() is True and breaker.state == CLOSED


def test_a_success_after_the_failed_probe_does_not_close_it():
    clock = Clock()
    breaker = CircuitBreaker(1, 5.0, clock)
    breaker.record_failure()
    clock.now += 5
    breaker.allow()  # the probe is in flight
    assert breaker.state == HALF_OPEN
    breaker.record_failure()  # the probe failed: open for a new interval
    assert breaker.record_success() is False and breaker.state == OPEN


def _from_another_thread(call):
    """call() on a thread of its own (another caller than the test's thread); returns its result."""
    result = []
    thread = threading.Thread(target=lambda: result.append(call()))
    thread.start()
    thread.join(5)
    assert result, "the call did not return"
    return result[0]


def _half_open_with_the_probe_out(clock: Clock) -> CircuitBreaker:
    breaker = CircuitBreaker(1, 5.0, clock)
    assert breaker.record_failure() is True
    clock.now += 5
    assert breaker.allow() and breaker.state == HALF_OPEN  # this thread is the probe
    return breaker


def test_a_late_success_while_the_probe_is_out_does_not_close_the_circuit():
    """A call that started before (while closed, or open) and succeeds while the probe is out says nothing
    about Redis now: only the probe's own report decides. (Before the probe was tracked, any success in
    half-open state closed the circuit.)"""
    clock = Clock()
    breaker = _half_open_with_the_probe_out(clock)
    assert _from_another_thread(breaker.record_success) is False
    assert breaker.state == HALF_OPEN
    assert _from_another_thread(breaker.allow) is False  # and the probe is still the only caller let through
    assert breaker.record_success() is True and breaker.state == CLOSED  # the probe's own success closes it


def test_a_late_failure_while_the_probe_is_out_does_not_decide_either_and_the_probe_failure_reopens():
    clock = Clock()
    breaker = _half_open_with_the_probe_out(clock)
    assert _from_another_thread(breaker.record_failure) is False
    assert breaker.state == HALF_OPEN
    assert breaker.record_failure() is True and breaker.state == OPEN  # the probe's own failure re-opens it
    clock.now += 4.9
    assert _from_another_thread(breaker.allow) is False  # for a new full interval


def test_the_probe_is_the_asyncio_task_that_was_let_through():
    """The HTTP fast path looks up on the event loop: one thread, many tasks. Another task's late success
    must not close the circuit; the probe task's does."""
    import asyncio

    clock = Clock()
    breaker = CircuitBreaker(1, 5.0, clock)
    breaker.record_failure()
    clock.now += 5

    async def main():
        probe_allowed = asyncio.Event()
        late_reported = asyncio.Event()

        async def probe():
            assert breaker.allow()
            probe_allowed.set()
            await late_reported.wait()  # the probe's Redis call is still out ...
            return breaker.record_success()

        async def late():
            await probe_allowed.wait()
            assert not breaker.allow()  # another task: skips Redis
            result = breaker.record_success()  # ... when a call that started earlier succeeds
            late_reported.set()
            return result, breaker.state

        return await asyncio.gather(probe(), late())

    probe_closed, (late_closed, state_after_late) = asyncio.run(main())
    assert late_closed is False and state_after_late == HALF_OPEN
    assert probe_closed is True and breaker.state == CLOSED


def test_a_replaced_probe_reports_late():
    """A probe that never reported was replaced after another interval: its report, if it ever comes, is a
    late one; the new probe decides."""
    clock = Clock()
    breaker = _half_open_with_the_probe_out(clock)
    clock.now += 5
    assert _from_another_thread(breaker.allow) is True  # a new probe, on another thread
    assert breaker.record_success() is False and breaker.state == HALF_OPEN  # the old probe, late
