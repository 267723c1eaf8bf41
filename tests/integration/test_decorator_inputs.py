"""The decorator and the model's input contract (issue 9), against a real redis-server: an input the
schema rejects reaches the model unchanged (its own error surfaces, nothing is cached), and inputs
of an extra="allow" schema that differ only in their extra fields never share an entry."""
from __future__ import annotations

import pytest
import redis
from ml_base import MLModel
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cachedmodel import RedisCachingDecorator
from cachedmodel.testing.insurance_like_model import InsuranceInput, InsuranceLikeModel, sample_input

pytestmark = pytest.mark.integration


@pytest.fixture
def client(redis_server):
    connection = redis.Redis.from_url(redis_server.url)
    yield connection
    connection.close()


class ModelInputError(ValueError):
    """The model's own error for a bad input (what its callers are written against)."""


class SelfCheckingModel(InsuranceLikeModel):
    """Checks dict inputs itself and raises its own error; lenient about a missing 'children'."""

    def predict(self, data):
        self.seen.append(data)
        if isinstance(data, dict):
            if not isinstance(data.get("age"), int):
                raise ModelInputError(f"age must be an integer, got {data.get('age')!r}")
            data = InsuranceInput(**{"children": 0, **data})
        return super().predict(data)


BAD = {"age": "forty-two", "sex": "female", "bmi": 27.5, "children": 2, "smoker": False, "region": "northwest"}
LENIENT = {"age": 42, "sex": "female", "bmi": 27.5, "smoker": False, "region": "northwest"}  # no 'children'


@pytest.mark.parametrize("options", [{}, {"reduced_precision_fields": ["bmi"], "number_of_places": 1}],
                         ids=["plain", "reduced_precision"])
def test_an_invalid_input_reaches_the_model_and_its_own_error_surfaces(redis_server, client, options):
    with pytest.raises(ModelInputError) as undecorated:
        SelfCheckingModel().predict(dict(BAD))
    model = SelfCheckingModel()
    decorator = RedisCachingDecorator(model, url=redis_server.url, **options)
    request = dict(BAD)
    with pytest.raises(ModelInputError) as decorated:
        decorator.predict(request)
    assert str(decorated.value) == str(undecorated.value)
    assert model.seen == [request] and model.seen[0] is request  # the caller's object, unchanged
    assert client.dbsize() == 0


def test_an_input_the_schema_rejects_but_the_model_accepts_is_answered_uncached(redis_server, client):
    expected = SelfCheckingModel().predict(dict(LENIENT))
    model = SelfCheckingModel()
    decorator = RedisCachingDecorator(model, url=redis_server.url)
    for calls in (1, 2):
        assert decorator.predict(dict(LENIENT)) == expected
        assert model.calls == calls  # never cached: the key would be of an input the schema does not have
    assert client.dbsize() == 0
    decorator.predict(sample_input())  # valid inputs are still cached
    assert client.dbsize() == 1
    with pytest.raises(ValidationError):
        decorator.cache_key(dict(LENIENT))  # the key of an invalid input stays an error


class OpenInput(BaseModel):
    model_config = ConfigDict(extra="allow")
    age: int = Field(ge=0)


class OpenOutput(BaseModel):
    echo: str


class OpenModel(MLModel):
    """Its answer depends on the extra fields too."""

    display_name = description = "extra=allow model"
    qualified_name = "open_model"
    version = "1"
    input_schema = OpenInput
    output_schema = OpenOutput

    def __init__(self):
        self.calls = 0

    def predict(self, data: OpenInput) -> OpenOutput:
        self.calls += 1
        return OpenOutput(echo=repr(sorted((data.__pydantic_extra__ or {}).items())) + f"/{data.age}")


def test_extra_fields_are_part_of_the_key(redis_server, client):
    model = OpenModel()
    decorator = RedisCachingDecorator(model, url=redis_server.url)
    one = decorator.predict({"age": 1, "tier": "gold"})
    two = decorator.predict({"age": 1, "tier": "silver"})
    assert one != two and model.calls == 2
    assert decorator.predict({"tier": "gold", "age": 1}) == one and model.calls == 2  # same extras: a hit
    assert decorator.predict({"age": 1, "tier": "gold", "more": {"b": 1, "a": [2]}}) != one and model.calls == 3
    assert decorator.predict({"age": 1, "more": {"a": [2], "b": 1}, "tier": "gold"}) and model.calls == 3
    plain = decorator.predict({"age": 1})
    assert plain not in (one, two) and model.calls == 4
    assert client.dbsize() == 4


def test_explicit_hashing_fields_leave_extra_fields_out_of_the_key(redis_server):
    model = OpenModel()
    decorator = RedisCachingDecorator(model, url=redis_server.url, hashing_fields=["age"])
    first = decorator.predict({"age": 1, "tier": "gold"})
    assert decorator.predict({"age": 1, "tier": "silver"}) == first and model.calls == 1
