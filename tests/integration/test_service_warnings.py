"""No log flood from Python warnings under concurrent misses (issue 19, item 6). Real uvicorn process,
real redis-server, 8 connections of distinct requests:

- a model that warns on every prediction (as a library on the prediction path may) fills the log with one
  line per distinct warning, not one per warning, and /metrics counts every one of them;
- the example model, with the service process switching threads as often as it can (so that races show
  within a test's length), raises no warning at all: before, scikit-learn's joblib wrapper cleared the
  process's warnings filters under concurrent predictions, and each prediction then printed ~156 copies of
  "`sklearn.utils.parallel.delayed` should be used with `sklearn.utils.parallel.Parallel`" (1.6 M lines).
"""
from __future__ import annotations

import sys
import threading
import warnings

import httpx
import pytest
import yaml
from ml_base import MLModel
from pydantic import BaseModel, Field

from cachedmodel.testing.model_service import MODEL_FILES_HINT, ModelService, artifact_missing

pytestmark = pytest.mark.integration

WARNINGS_PER_PREDICTION = 20
CONNECTIONS = 8


class Number(BaseModel):
    value: int = Field(ge=0, le=100_000)


class Doubled(BaseModel):
    doubled: int


class WarningModel(MLModel):
    """Warns WARNINGS_PER_PREDICTION times per prediction, each through a fresh registry: what Python's
    filters let through every time (as after anything reset them), so each one reaches showwarning."""
    display_name = "warning model"
    qualified_name = "warning_model"
    description = "warns on every prediction"
    version = "0.0.1"
    input_schema = Number
    output_schema = Doubled

    def __init__(self) -> None:
        pass

    def predict(self, data: Number) -> Doubled:
        for _ in range(WARNINGS_PER_PREDICTION):
            warnings.warn_explicit("a library complains on every call", UserWarning, "library.py", 42, registry={})
        return Doubled(doubled=2 * data.value)


def _post_all(url: str, bodies: list[dict]) -> None:
    """POST every body over CONNECTIONS concurrent connections; every answer must be 200."""
    failures: list[str] = []

    def run(part: list[dict]) -> None:
        with httpx.Client(timeout=60.0) as http:
            for body in part:
                response = http.post(url, json=body)
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:200]}")
    threads = [threading.Thread(target=run, args=(bodies[i::CONNECTIONS],)) for i in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[:3]


def _sample(metrics: str, name: str, **labels: str) -> float:
    wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    values = [float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith(wanted + " ")]
    return sum(values)


def test_a_warning_on_every_prediction_is_logged_once_and_counted_every_time(tmp_path, redis_server):
    cache = {"class_path": "cachedmodel.RedisCachingDecorator", "configuration": {"url": redis_server.url}}
    config = tmp_path / "rest_config.yaml"
    config.write_text(yaml.safe_dump({"models": [
        {"class_path": f"tests.integration.test_service_warnings.{WarningModel.__name__}", "create_endpoint": True,
         "decorators": [cache]}]}))
    requests = 1000
    with ModelService(config=config) as service:
        _post_all(service.prediction_url("warning_model"), [{"value": n} for n in range(requests)])  # all misses
        metrics = httpx.get(f"{service.url}/metrics", timeout=10).text
        logs = service.logs()
    assert logs.count("a library complains on every call") == 1, logs[-3000:]
    assert len(logs.encode()) < 4096, logs[-3000:]
    assert _sample(metrics, "cachedmodel_warnings_total", category="UserWarning") == requests * WARNINGS_PER_PREDICTION
    model = {"model": "warning_model"}
    assert _sample(metrics, "cachedmodel_cache_misses_total", **model) == requests
    assert _sample(metrics, "cachedmodel_cache_requests_total", **model) == (
        _sample(metrics, "cachedmodel_cache_hits_total", **model, tier="redis")
        + _sample(metrics, "cachedmodel_cache_hits_total", **model, tier="local")
        + _sample(metrics, "cachedmodel_cache_misses_total", **model)
        + sum(_sample(metrics, "cachedmodel_cache_bypass_total", **model, reason=reason)
              for reason in ("circuit_open", "redis_error", "pool_exhausted", "invalid_input", "unkeyable")))


SERVICE_SWITCHING_THREADS_OFTEN = ("import sys; sys.setswitchinterval(1e-6); "
                                   "from cachedmodel.service.__main__ import main; raise SystemExit(main())")


def test_the_example_model_under_concurrent_misses_raises_no_warning(redis_server):
    if artifact_missing():
        pytest.fail(MODEL_FILES_HINT)
    from insurance_charges_model.workload import workload
    bodies = workload(1200, repeat_share=0.0, seed=19)
    service = ModelService(env={"REDIS_URL": redis_server.url},
                           command=[sys.executable, "-c", SERVICE_SWITCHING_THREADS_OFTEN])
    try:
        service.start()
        _post_all(service.prediction_url(), bodies)
        metrics = httpx.get(f"{service.url}/metrics", timeout=10).text
        logs = service.logs()
    finally:
        service.cleanup()
    assert "sklearn.utils.parallel.delayed" not in logs, logs[-3000:]
    assert "Warning" not in logs and len(logs.encode()) < 4096, logs[-3000:]
    assert _sample(metrics, "cachedmodel_warnings_total") == 0
    assert _sample(metrics, "cachedmodel_cache_misses_total", model="insurance_charges_model") >= len(
        {tuple(sorted(body.items())) for body in bodies}) * 0.99  # distinct bodies: (nearly) all misses
