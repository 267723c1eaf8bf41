"""The wait for another process's lease (shared_single_flight), against a backend that plays the holder:
the holder stores its value and then releases the lease, exactly between two reads of the waiter."""
from cachedmodel import RedisCachingDecorator
from cachedmodel.testing.insurance_like_model import InsuranceLikeModel, sample_input


class HolderFinishesMidPoll:
    """A Redis where another process holds the lease; right after the waiter's first GET of the key, that
    process stores the value and releases the lease (the interleaving that cost a second model call)."""

    def __init__(self, value: bytes, key: bytes):
        self.value, self.key, self.finished, self.gets = value, key, False, 0

    def acquire(self, key, token, milliseconds):
        return False  # held by the other process

    def get(self, key):
        self.gets += 1
        stored = self.value if self.finished else None
        self.finished = True  # the holder's SET and DEL land right after this read
        return stored

    def exists(self, key):
        return 0 if self.finished else 1


def test_a_value_stored_between_the_waiters_reads_is_taken_not_computed_again():
    model = InsuranceLikeModel(qualified_name="lease_order_model")
    waiter = RedisCachingDecorator(model, url="unix:///nonexistent-dir/redis.sock", shared_single_flight=True)
    data = sample_input(age=33)
    key = waiter.cache_key(data).encode()
    stored = waiter._codec.encode(waiter._output_values(model.predict(data)))  # what the holder stored
    waiter.__dict__["_backend"] = HolderFinishesMidPoll(stored, key)
    token, output = waiter._take_lease(key)
    assert token is None and output == model.predict(data), "the waiter must take the value the holder stored"
