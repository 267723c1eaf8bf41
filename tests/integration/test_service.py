"""The model service over HTTP: real uvicorn process, real redis-server, the real example model.

Covers: miss then hit for an identical body, 4xx naming the field for bad input, Redis dying and
coming back mid-run, probes while models load, model errors as 5xx, /metrics, and the stock
rest-model-service command with the same configuration.
"""
from __future__ import annotations

import json
import re
import sys

import httpx
import pytest
import redis
import yaml

from cachedmodel.testing.model_service import MODEL_FILES_HINT, ModelService, artifact_missing
from cachedmodel.testing.redis_server import wait_until

pytestmark = pytest.mark.integration

BODY = {"age": 42, "sex": "female", "bmi": 27.5, "children": 2, "smoker": False, "region": "northwest"}


@pytest.fixture(autouse=True, scope="module")
def _model_artifact():
    if artifact_missing():
        pytest.fail(MODEL_FILES_HINT)


@pytest.fixture
def service(redis_server):
    svc = ModelService(env={"REDIS_URL": redis_server.url})
    try:
        svc.start()
        yield svc
    except BaseException:
        print(svc.logs())
        raise
    finally:
        svc.cleanup()


@pytest.fixture
def client(service):
    with httpx.Client(base_url=service.url, timeout=10.0) as http:
        yield http


def predict(http: httpx.Client, body, **kwargs) -> httpx.Response:
    if isinstance(body, (dict, list)):
        return http.post("/api/models/insurance_charges_model/prediction", json=body, **kwargs)
    return http.post("/api/models/insurance_charges_model/prediction", content=body, **kwargs)


def metric(text: str, name: str, **labels) -> float:
    """Value of one sample in Prometheus text format (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_first_request_computes_and_the_identical_second_is_a_hit(client, redis_server):
    store = redis.Redis.from_url(redis_server.url)
    first = predict(client, BODY)
    assert first.status_code == 200, first.text
    assert first.headers["x-cache"] == "miss"
    assert store.dbsize() == 1
    second = predict(client, BODY)
    assert second.status_code == 200 and second.headers["x-cache"] == "hit"
    assert second.content == first.content  # byte-identical answer
    charges = first.json()["charges"]
    assert charges == round(charges, 2) and charges > 0
    # a different person is a new miss and a new key
    other = predict(client, {**BODY, "smoker": True})
    assert other.headers["x-cache"] == "miss" and other.json()["charges"] > charges
    assert store.dbsize() == 2
    metrics = client.get("/metrics").text
    assert metric(metrics, "cachedmodel_cache_hits_total", model="insurance_charges_model", tier="redis") == 1
    assert metric(metrics, "cachedmodel_cache_misses_total", model="insurance_charges_model") == 2
    # exact accounting over HTTP (the fast path's hit, the route's misses): each request counted once
    assert metric(metrics, "cachedmodel_cache_requests_total", model="insurance_charges_model") == 3
    assert metric(metrics, "http_requests_total", method="POST", status="200",
                  route="/api/models/insurance_charges_model/prediction") == 3
    assert metric(metrics, "http_request_duration_seconds_count", method="POST", status="200",
                  route="/api/models/insurance_charges_model/prediction") == 3


@pytest.mark.parametrize("body, headers, status, error_type, named", [
    ({**BODY, "age": 17}, {}, 400, "ValidationError", "'age'"),
    ({**BODY, "age": 66}, {}, 400, "ValidationError", "'age'"),
    ({**BODY, "bmi": 51.0}, {}, 400, "ValidationError", "'bmi'"),
    ({**BODY, "sex": "other"}, {}, 400, "ValidationError", "'sex'"),
    ({**BODY, "region": "mars"}, {}, 400, "ValidationError", "'region'"),
    ({**BODY, "smoker": "yes"}, {}, 400, "ValidationError", "'smoker'"),
    ({k: v for k, v in BODY.items() if k != "children"}, {}, 400, "ValidationError", "'children' is required"),
    ({**BODY, "smokes": True}, {}, 400, "ValidationError", "'smokes'"),
    (b'{"age": 42, "sex": ', {"content-type": "application/json"}, 400, "MalformedJSON", "not valid JSON"),
    (b"", {"content-type": "application/json"}, 400, "ValidationError", "body is missing"),
    ([BODY], {}, 400, "ValidationError", "dictionary"),
    (json.dumps(BODY).encode(), {"content-type": "text/plain"}, 415, "UnsupportedMediaType", "application/json"),
])
def test_bad_input_gets_a_4xx_naming_the_problem(client, body, headers, status, error_type, named):
    response = predict(client, body, headers=headers)
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["type"] == error_type
    assert any(named in message for message in payload["messages"]), payload


def test_redis_down_mid_run_still_answers_and_hits_resume(client, redis_server):
    assert predict(client, BODY).headers["x-cache"] == "miss"
    expected = predict(client, BODY)
    assert expected.headers["x-cache"] == "hit"

    redis_server.kill()
    for age in range(20, 40):  # repeated and new inputs: all answered by the model
        response = predict(client, {**BODY, "age": age})
        assert response.status_code == 200, response.text
    down = predict(client, BODY)
    assert down.status_code == 200 and down.json() == expected.json()
    metrics = client.get("/metrics").text
    assert sum(metric(metrics, "cachedmodel_cache_errors_total", kind=k) for k in ("connection", "timeout")) >= 1

    redis_server.start()  # same port, empty data set
    wait_until(lambda: predict(client, BODY).headers["x-cache"] == "hit", timeout=30, interval=0.2,
               what="cache hits to resume after Redis came back")
    assert predict(client, BODY).json() == expected.json()


def test_metrics_endpoint_exposes_cache_and_http_series(client):
    predict(client, BODY)
    predict(client, BODY)
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    for series in ("cachedmodel_cache_requests_total", "cachedmodel_cache_hits_total", "cachedmodel_cache_misses_total",
                   "cachedmodel_cache_errors_total", "cachedmodel_redis_up",
                   "cachedmodel_cache_lookup_seconds_bucket", "http_requests_total",
                   "http_request_duration_seconds_bucket"):
        assert f"\n{series}{{" in response.text, series
    # the Redis-side figures come from a background INFO sample, taken right after the model was set
    wait_until(lambda: "\ncachedmodel_redis_used_memory_bytes{" in client.get("/metrics").text, 10,
               what="an INFO sample on /metrics")


def test_probes_answer_503_until_models_are_loaded(tmp_path, redis_server):
    gate = tmp_path / "gate"
    config = tmp_path / "rest_config.yaml"
    config.write_text(yaml.safe_dump({"models": [{
        "class_path": "tests.support.service_models.GatedModel", "create_endpoint": True,
        "configuration": {"gate": str(gate)},
        "decorators": [{"class_path": "cachedmodel.RedisCachingDecorator",
                        "configuration": {"url": redis_server.url}}]}]}))
    svc = ModelService(config=config)
    try:
        svc.start(wait_ready=False)
        with httpx.Client(base_url=svc.url, timeout=5.0) as http:
            assert http.get("/api/health").status_code == 200  # alive: do not restart it
            assert http.get("/api/health/ready").status_code == 503
            assert http.get("/api/health/startup").status_code == 503
            loading = http.post("/api/models/gated_model/prediction", json={"value": 1})
            assert loading.status_code == 503 and "loading" in loading.json()["messages"][0]
            gate.touch()
            svc.wait_ready(timeout=30)
            assert http.get("/api/health/startup").status_code == 200
            assert http.get("/api/health").status_code == 200
            assert http.post("/api/models/gated_model/prediction", json={"value": 21}).json() == {"doubled": 42}
    finally:
        svc.cleanup()


def test_model_that_fails_to_load_is_reported_by_the_probes(tmp_path, redis_server):
    """With EXIT_ON_LOAD_FAILURE=0 the service keeps rest-model-service's behaviour: up, answering 503."""
    config = tmp_path / "rest_config.yaml"
    config.write_text(yaml.safe_dump({"models": [{
        "class_path": "tests.support.service_models.GatedModel", "create_endpoint": True,
        "configuration": {"gate": str(tmp_path / "never"), "timeout": 0.2}}]}))
    svc = ModelService(config=config, env={"EXIT_ON_LOAD_FAILURE": "0"})
    try:
        svc.start(wait_ready=False)
        with httpx.Client(base_url=svc.url, timeout=5.0) as http:
            wait_until(lambda: http.get("/api/health/startup").status_code == 200, 30, what="startup to finish")
            assert http.get("/api/health").status_code == 503
            assert http.get("/api/health/ready").status_code == 503
            failed = http.post("/api/models/gated_model/prediction", json={"value": 1})
            assert failed.status_code == 503 and "failed" in failed.json()["messages"][0]
    finally:
        svc.cleanup()


def test_invalid_decorator_option_stops_the_service_with_the_option_named(tmp_path, redis_server):
    """By default a load failure exits with code 3 after logging why, so Kubernetes shows the reason
    as the container's termination message at once (not after liveness restarts)."""
    config = tmp_path / "rest_config.yaml"
    config.write_text(yaml.safe_dump({"models": [{
        "class_path": "tests.support.service_models.FailingModel", "create_endpoint": True,
        "decorators": [{"class_path": "cachedmodel.RedisCachingDecorator",
                        "configuration": {"url": redis_server.url, "hashing_fields": ["valeu"]}}]}]}))
    svc = ModelService(config=config)
    try:
        svc.start(wait_ready=False)
        wait_until(lambda: svc.process.poll() is not None, 30, what="the service to exit after the load failure")
        assert svc.process.returncode == 3
        logs = svc.logs()
        assert "option 'hashing_fields': 'valeu' is not an input field" in logs
        assert logs.rstrip().endswith("the models failed to load (traceback above); exiting with code 3")
    except RuntimeError:  # the process may exit before it ever listened: same checks on what it left
        assert svc.process.returncode == 3, svc.logs()
        assert "option 'hashing_fields': 'valeu' is not an input field" in svc.logs()
    finally:
        svc.cleanup()


def test_model_error_is_a_5xx_with_the_reason(tmp_path, redis_server):
    config = tmp_path / "rest_config.yaml"
    config.write_text(yaml.safe_dump({"models": [{
        "class_path": "tests.support.service_models.FailingModel", "create_endpoint": True,
        "decorators": [{"class_path": "cachedmodel.RedisCachingDecorator",
                        "configuration": {"url": redis_server.url}}]}]}))
    with ModelService(config=config) as svc, httpx.Client(base_url=svc.url, timeout=5.0) as http:
        ok = http.post("/api/models/failing_model/prediction", json={"value": 4})
        assert ok.status_code == 200 and ok.json() == {"doubled": 8}
        failed = http.post("/api/models/failing_model/prediction", json={"value": 700})
        assert failed.status_code == 500
        assert failed.json() == {"type": "ServiceError", "messages": ["cannot handle value 700"]}
        assert redis.Redis.from_url(redis_server.url).dbsize() == 1  # errors are never cached


def test_a_decorator_listed_after_the_cache_is_never_skipped_by_the_fast_path(tmp_path, redis_server):
    """rest-model-service wraps in list order (the last decorator is outermost): hits of an inner
    caching decorator must still go through the outer decorator, so the fast path stays off."""
    config = tmp_path / "rest_config.yaml"
    config.write_text(yaml.safe_dump({"models": [{
        "class_path": "tests.support.service_models.FailingModel", "create_endpoint": True,
        "decorators": [{"class_path": "cachedmodel.RedisCachingDecorator", "configuration": {"url": redis_server.url}},
                       {"class_path": "tests.support.service_models.OffsetDecorator",
                        "configuration": {"offset": 1000}}]}]}))
    store = redis.Redis.from_url(redis_server.url)
    with ModelService(config=config) as svc, httpx.Client(base_url=svc.url, timeout=5.0) as http:
        first = http.post("/api/models/failing_model/prediction", json={"value": 4})
        hits_before = store.info("stats")["keyspace_hits"]
        second = http.post("/api/models/failing_model/prediction", json={"value": 4})
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json() == {"doubled": 1008}  # the outer decorator ran both times
    assert second.headers.get("x-cache") != "hit"
    assert store.dbsize() == 1 and store.info("stats")["keyspace_hits"] == hits_before + 1  # still cached inside


def test_stock_rest_model_service_command_caches_with_the_same_config(redis_server):
    store = redis.Redis.from_url(redis_server.url)
    stock = ModelService(env={"REDIS_URL": redis_server.url},
                         command=[sys.executable, "-m", "uvicorn", "rest_model_service.main:app",
                                  "--host", "127.0.0.1", "--port", "{port}"])
    stock.command = [part.replace("{port}", str(stock.port)) for part in stock.command]
    try:
        stock.start()
        with httpx.Client(base_url=stock.url, timeout=10.0) as http:
            first = predict(http, BODY)
            assert first.status_code == 200 and store.dbsize() == 1
            hits_before = store.info("stats")["keyspace_hits"]
            second = predict(http, BODY)
            assert second.json() == first.json()
            assert store.info("stats")["keyspace_hits"] == hits_before + 1  # answered from Redis
    except BaseException:
        print(stock.logs())
        raise
    finally:
        stock.cleanup()
