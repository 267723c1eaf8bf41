"""Cache errors are logged once per burst (plus a periodic summary), not once per request."""
import logging

from cachedmodel.metrics import BurstLogger


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_first_error_of_a_burst_is_logged_the_rest_summarized(caplog):
    clock = Clock()
    events = BurstLogger("model", interval=60, clock=clock)
    with caplog.at_level(logging.WARNING, logger="cachedmodel"):
        assert events.error("connection", "refused") is True
        assert [events.error("connection", "refused") for _ in range(100)] == [False] * 100
        assert events.error("decode", "bad entry") is True  # another kind is its own burst
        clock.now = 61
        assert events.error("connection", "refused") is True
        events.recovered()
        assert events.error("connection", "refused") is True  # a new burst after recovery
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 5
    assert "100 more since the last message" in messages[2]
    assert "recovered after connection, decode errors" in messages[3]
