"""The decorator loaded the way rest-model-service loads it: `decorators:` entry in a service
configuration (class_path + configuration with ${ENV} values), served over HTTP in-process."""
import pytest
from fastapi.testclient import TestClient
from ml_base.utilities import ModelManager
from prometheus_client import REGISTRY
from rest_model_service.configuration import ServiceConfiguration
from rest_model_service.helpers import create_app

from cachedmodel import RedisCachingDecorator

pytestmark = pytest.mark.integration


def _clear_model_manager():
    if hasattr(ModelManager, "_instance"):
        ModelManager.clear_instance()


@pytest.fixture
def fresh_model_manager():
    _clear_model_manager()
    yield
    _clear_model_manager()


def test_served_predictions_are_cached(redis_server, monkeypatch, fresh_model_manager):
    monkeypatch.setenv("TEST_SERVICE_REDIS_URL", redis_server.url)
    configuration = ServiceConfiguration(**{
        "service_title": "test",
        "models": [{
            "class_path": "cachedmodel.testing.insurance_like_model.InsuranceLikeModel",
            "create_endpoint": True,
            "configuration": {"qualified_name": "served_model"},
            "decorators": [{"class_path": "cachedmodel.RedisCachingDecorator",
                            "configuration": {"url": "${TEST_SERVICE_REDIS_URL}", "password": "${UNSET_PW:-}",
                                              "serder": "MessagePack", "ttl_seconds": 60,
                                              "reduced_precision_fields": ["bmi"], "number_of_places": 2}}],
        }],
    })
    app = create_app(configuration, wait_for_model_creation=True)
    model = ModelManager().get_model("served_model")
    assert isinstance(model, RedisCachingDecorator)
    inner = model.__dict__["_model"]
    body = {"age": 30, "sex": "male", "bmi": 31.2345, "children": 1, "smoker": True, "region": "southeast"}
    with TestClient(app) as client:
        first = client.post("/api/models/served_model/prediction", json=body)
        second = client.post("/api/models/served_model/prediction", json={**body, "bmi": 31.2349})
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json() and inner.calls == 1
    assert REGISTRY.get_sample_value("cachedmodel_cache_hits_total", {"model": "served_model", "tier": "redis"}) == 1
