"""The decorator without a Redis server: construction, set_model checks, keys, and the fallback path
against a Unix socket that does not exist (no network involved)."""
import asyncio

import pytest
from ml_base.utilities import ModelManager
from prometheus_client import REGISTRY

from cachedmodel import ConfigurationError, RedisCachingDecorator
from cachedmodel.testing.insurance_like_model import InsuranceInput, InsuranceLikeModel, sample_input

NOWHERE = "unix:///nonexistent-dir/redis.sock"


def metric(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_unknown_hashing_field_fails_when_the_model_is_set_naming_it():
    decorator = RedisCachingDecorator(hashing_fields=["age", "wage"])
    with pytest.raises(ConfigurationError, match="'hashing_fields': 'wage' is not an input field"):
        decorator.set_model(InsuranceLikeModel())


def test_reduced_precision_needs_existing_float_fields():
    with pytest.raises(ConfigurationError, match="'reduced_precision_fields': 'weight'"):
        RedisCachingDecorator(reduced_precision_fields=["weight"], number_of_places=1).set_model(InsuranceLikeModel())
    with pytest.raises(ConfigurationError, match="'age' of model insurance_like_model is not a float field"):
        RedisCachingDecorator(reduced_precision_fields=["age"], number_of_places=1).set_model(InsuranceLikeModel())


def test_bad_options_fail_at_construction():
    with pytest.raises(ConfigurationError, match="'serder'"):
        RedisCachingDecorator(serder="YAML")


def test_built_like_rest_model_service_does_it():
    """decorator_class(**configuration), then ModelManager.add_decorator -> set_model."""
    manager = ModelManager()
    manager.clear_instance()
    manager = ModelManager()
    model = InsuranceLikeModel(qualified_name="mm_model")
    manager.add_model(model)
    manager.add_decorator("mm_model", RedisCachingDecorator(**{"url": NOWHERE, "prefix": "cm", "ttl_seconds": 60}))
    decorated = manager.get_model("mm_model")
    assert isinstance(decorated, RedisCachingDecorator)
    assert decorated.qualified_name == "mm_model" and decorated.input_schema is InsuranceInput
    assert decorated.cache_key(sample_input()).startswith("cm:")
    manager.clear_instance()


def test_decorator_state_does_not_leak_into_the_model():
    model = InsuranceLikeModel()
    decorator = RedisCachingDecorator(model, url=NOWHERE)
    assert "options" not in vars(model) and "_keys" not in vars(model)
    assert decorator.version == "1.0.0" and decorator.display_name == model.display_name


def test_key_changes_with_model_version_and_name_and_ignores_unhashed_fields():
    data = sample_input()
    base = RedisCachingDecorator(InsuranceLikeModel(), url=NOWHERE).cache_key(data)
    assert RedisCachingDecorator(InsuranceLikeModel(version="1.0.1"), url=NOWHERE).cache_key(data) != base
    assert RedisCachingDecorator(InsuranceLikeModel(qualified_name="x"), url=NOWHERE).cache_key(data) != base
    partial = RedisCachingDecorator(InsuranceLikeModel(), url=NOWHERE, hashing_fields=["age", "smoker"])
    assert partial.cache_key(data) == partial.cache_key(sample_input(bmi=40.0)) != partial.cache_key(
        sample_input(age=43))
    assert RedisCachingDecorator(InsuranceLikeModel(), url=NOWHERE).cache_key(data.model_dump()) == base


def test_reduced_precision_rounds_a_copy_for_key_and_model():
    model = InsuranceLikeModel()
    decorator = RedisCachingDecorator(model, url=NOWHERE, reduced_precision_fields=["bmi"], number_of_places=1)
    data = sample_input(bmi=27.14)
    assert decorator.cache_key(data) == decorator.cache_key(sample_input(bmi=27.06))
    decorator.predict(data)
    assert data.bmi == 27.14 and model.seen[-1].bmi == 27.1


def test_predict_without_a_model_is_a_clear_error():
    with pytest.raises(RuntimeError, match="set_model"):
        RedisCachingDecorator(url=NOWHERE).predict(sample_input())


def test_unreachable_redis_falls_back_to_the_model_and_the_circuit_opens():
    model = InsuranceLikeModel(qualified_name="unreachable_model")
    decorator = RedisCachingDecorator(model, url=NOWHERE, circuit_breaker_failures=2,
                                      circuit_breaker_reset_seconds=60)
    before = metric("cachedmodel_cache_errors_total", model="unreachable_model", kind="connection")
    outputs = [decorator.predict(sample_input(age=20 + i)) for i in range(10)]
    assert [output.charges for output in outputs] == [model.predict(sample_input(age=20 + i)).charges
                                                      for i in range(10)]
    assert decorator.circuit_state == "open"
    # two failed GETs opened it (no SET is tried after a failed GET); afterwards Redis is skipped
    assert metric("cachedmodel_cache_errors_total", model="unreachable_model", kind="connection") - before == 2
    assert metric("cachedmodel_circuit_breaker_open", model="unreachable_model") == 1
    assert decorator.get_cached(sample_input()) is None
    assert asyncio.run(decorator.aget_cached(sample_input())) is None


def test_collectors_are_shared_between_instances():
    for _ in range(3):
        RedisCachingDecorator(InsuranceLikeModel(qualified_name="twice"), url=NOWHERE)
    assert metric("cachedmodel_cache_misses_total", model="twice") == 0


@pytest.mark.parametrize("url", ["redis://:hunter2-pw@cache:6379/zero", "redis://u:hunter2-pw@cache:6379/0?db=x",
                                 "http://:hunter2-pw@cache:6379/0"])
def test_a_bad_url_fails_at_construction_without_showing_the_password(url):
    """The start-up error is the pod's termination message and ends up in the CachedModel status."""
    with pytest.raises(ConfigurationError, match="'url'") as caught:
        RedisCachingDecorator(url=url)
    assert "hunter2-pw" not in str(caught.value)


def test_infinite_ttl_fails_at_construction():
    """`ttl_seconds: inf` used to be accepted, then every SET failed."""
    with pytest.raises(ConfigurationError, match="'ttl_seconds'"):
        RedisCachingDecorator(ttl_seconds="inf")
