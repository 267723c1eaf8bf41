"""A cached value that decodes but cannot be served (NaN/+-Inf: no JSON form) must not give a lasting
500 for its input (issue 9): over real HTTP, the service answers from the model, rewrites the entry,
and the next identical request is a hit again. Real uvicorn process, real redis-server, real model."""
from __future__ import annotations

import json
import math

import cramjam
import httpx
import msgpack
import pytest
import redis
import yaml

from cachedmodel.testing.model_service import EXAMPLE_CONFIG, MODEL_FILES_HINT, ModelService, artifact_missing

pytestmark = pytest.mark.integration

BODY = {"age": 42, "sex": "female", "bmi": 27.5, "children": 2, "smoker": False, "region": "northwest"}
PATH = "/api/models/insurance_charges_model/prediction"


@pytest.fixture(autouse=True, scope="module")
def _model_artifact():
    if artifact_missing():
        pytest.fail(MODEL_FILES_HINT)


def config_with(tmp_path, **cache_options):
    """The example configuration with some cache options changed."""
    config = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    config["models"][0]["decorators"][0]["configuration"].update(cache_options)
    path = tmp_path / "rest_config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def planted(good: bytes, serder: str, compression: bool, value: float) -> bytes:
    """`good`'s marker with a payload holding a non-finite float, as a writer that allowed it would store it."""
    raw = json.dumps([value], allow_nan=True).encode() if serder == "JSON" else msgpack.packb([value])
    if compression:
        raw = bytes(cramjam.snappy.compress_raw(raw))
    return good[:1] + raw


def decode_errors(http) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith("cachedmodel_cache_errors_total{") and 'kind="decode"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize("serder, compression", [("MessagePack", False), ("JSON", True)])
def test_an_unservable_cached_value_is_replaced_not_a_lasting_500(tmp_path, redis_server, serder, compression):
    config = config_with(tmp_path, serder=serder, use_compression=compression)
    store = redis.Redis.from_url(redis_server.url)
    service = ModelService(config=config, env={"REDIS_URL": redis_server.url})
    try:
        service.start()
        with httpx.Client(base_url=service.url, timeout=10.0) as http:
            first = http.post(PATH, json=BODY)
            assert first.status_code == 200 and first.headers["x-cache"] == "miss", first.text
            (key,) = store.keys()
            good = store.get(key)
            for value in (math.nan, math.inf, -math.inf):
                store.set(key, planted(good, serder, compression, value))
                for _ in range(2):  # the first answer rewrites the entry; the second is a hit on it
                    response = http.post(PATH, json=BODY)
                    assert response.status_code == 200, response.text
                    assert response.content == first.content
                assert response.headers["x-cache"] == "hit"
                assert store.get(key) == good
            assert decode_errors(http) >= 3
    except BaseException:
        print(service.logs())
        raise
    finally:
        service.cleanup()
        store.close()
