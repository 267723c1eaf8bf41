"""The Redis INFO sampler's registry: pure parts and its locking (no Redis needed)."""
import gc
import threading

from cachedmodel.redis_info import RedisInfoSampler


class Owner:
    """Stands in for a decorator: the sampler forgets a model when its owner is collected."""


def test_an_owner_collected_while_the_registry_is_locked_does_not_deadlock():
    """Any allocation can start a garbage collection, so a dead owner's finalizer (which takes the
    sampler's lock) may run while that same thread holds the lock, e.g. inside register()'s
    weakref.finalize: with a plain Lock that hung the whole test process (seen in a full run)."""
    sampler = RedisInfoSampler()
    gc.disable()
    try:
        dead = Owner()
        dead.cycle = dead  # only the cyclic collector frees it, at a moment nobody chooses
        sampler.register("dead_model", dead, dict, 60)
        del dead
        finished = threading.Event()

        def collect_while_locked():
            with sampler._lock:  # what register() does when a collection starts inside it
                gc.collect()
            finished.set()

        thread = threading.Thread(target=collect_while_locked, daemon=True)
        thread.start()
        thread.join(10)
        assert finished.is_set(), "a finalizer deadlocked on the sampler's lock"
    finally:
        gc.enable()
    assert "dead_model" not in sampler._entries


def test_a_model_registered_again_replaces_its_reader_and_unregister_checks_it():
    sampler = RedisInfoSampler()
    first, second = Owner(), Owner()
    read_a, read_b = (lambda: {}), (lambda: {})
    sampler.register("m", first, read_a, 60)
    sampler.register("m", second, read_b, 60)
    sampler.unregister("m", read_a)  # an older decorator closing must not stop the newer one's sampling
    assert sampler._entries["m"].read is read_b
    sampler.unregister("m", read_b)
    assert "m" not in sampler._entries
