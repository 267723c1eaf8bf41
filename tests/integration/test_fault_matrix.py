"""The Redis fault matrix over HTTP: whatever Redis does, no prediction fails, none is wrong, hits come back.

One model service (the example config, the real model) for the module; each fault gets a fresh
redis-server on the port its REDIS_URL names. Under a load of 4 concurrent clients sending 50
distinct bodies in a loop, Redis is killed, restarted cleanly, hung (SIGSTOP), paused, filled under
noeviction, has foreign values written under the service's keys, gets a password the service does
not know, and runs out of client slots. Every 200 answer is compared with the model's own answer
(computed in-process); see cachedmodel.testing.faults for the load and the faults, and
bench/bench_faults.py for the same matrix as a table. About a minute and a half in all.
"""
from __future__ import annotations

import json

import msgpack
import pytest
import redis

from cachedmodel import RedisCachingDecorator
from cachedmodel.testing import faults
from cachedmodel.testing.model_service import MODEL_FILES_HINT, ModelService, artifact_missing
from cachedmodel.testing.processes import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def matrix():
    if artifact_missing():
        pytest.fail(MODEL_FILES_HINT)
    port = free_port()
    bodies = faults.fault_bodies()
    service = ModelService(env={"REDIS_URL": f"redis://127.0.0.1:{port}/0"})
    try:
        service.start()
        yield {"service": service, "port": port, "bodies": bodies, "expected": faults.expected_answers(bodies),
               "keys": faults.cache_keys(bodies, port)}
    finally:
        service.cleanup()


def test_the_bodies_keys_and_answers_are_distinct(matrix):
    """(The keys are checked against the service's Redis by the "garbage" fault.)"""
    assert len(matrix["bodies"]) == faults.BODY_COUNT
    assert len({json.dumps(body, sort_keys=True) for body in matrix["bodies"]}) == faults.BODY_COUNT
    assert len(set(matrix["keys"])) == faults.BODY_COUNT
    assert len({answer["charges"] for answer in matrix["expected"]}) > faults.BODY_COUNT // 2


@pytest.mark.parametrize("fault", faults.FAULTS, ids=[fault.name for fault in faults.FAULTS])
def test_no_prediction_fails_or_is_wrong_and_hits_resume(matrix, fault):
    try:
        result = faults.run_fault(fault, matrix["service"], matrix["port"], matrix["bodies"], matrix["expected"],
                                  matrix["keys"])
    except BaseException:
        print(matrix["service"].logs()[-5000:])
        raise
    print(json.dumps(result))
    assert faults.check(result) == [], json.dumps(result, indent=1)


@pytest.mark.parametrize("payload", ["nan", "-inf", "1e400", "NaN"])
def test_a_foreign_string_that_validates_to_a_non_finite_float_is_a_corrupt_entry(redis_server, payload):
    """The fault matrix found it: a stored ["nan"] passed the codec (a string, not a float) and lax
    validation made it charges=nan, a hit no JSON response can carry: HTTP 500 on every request for
    that body, and never replaced. Now it is a decode error: the model answers and the SET replaces it."""
    from insurance_charges_model.model import InsuranceChargesModel

    model = InsuranceChargesModel()
    body = faults.fault_bodies(1)[0]
    decorator = RedisCachingDecorator(model, url=redis_server.url, prefix="insurance", serder="MessagePack")
    store = redis.Redis.from_url(redis_server.url)
    key = decorator.cache_key(body)
    store.set(key, b"\x11" + msgpack.packb([payload]))
    assert decorator.predict(body) == model.predict(body)
    assert decorator.get_cached(body) == model.predict(body)  # overwritten with the model's answer
    decorator.close()
