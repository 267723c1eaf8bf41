"""Output schemas with aliases, nested aliased models and RootModel hit over real HTTP too (issue 9):
the fast path's aget_cached and the route's predict share the decoder, so before the fix every
second request was a decode error and a model call. Real uvicorn process, real redis-server; the
models below are loaded by the service from their class_path."""
from __future__ import annotations

import datetime
import decimal
import uuid

import httpx
import pytest
import redis
import yaml
from ml_base import MLModel
from pydantic import BaseModel, ConfigDict, Field, RootModel
from pydantic.alias_generators import to_camel

from cachedmodel.testing.model_service import ModelService

pytestmark = pytest.mark.integration


class Query(BaseModel):
    n: int = Field(ge=0, le=1000)


class Part(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel)
    unit_price: float


class Quote(BaseModel):
    total_price: float = Field(alias="totalPrice")
    main_part: Part = Field(validation_alias="part")


class Prices(RootModel[list[float]]):
    pass


class _Base(MLModel):
    display_name = description = "schema model for service tests"
    version = "0.0.1"
    input_schema = Query

    def __init__(self) -> None:
        pass


class QuoteModel(_Base):
    qualified_name = "quote_model"
    output_schema = Quote

    def predict(self, data: Query) -> Quote:
        return Quote(totalPrice=data.n / 3, part={"unitPrice": data.n / 7})


class PricesModel(_Base):
    qualified_name = "prices_model"
    output_schema = Prices

    def predict(self, data: Query) -> Prices:
        return Prices([data.n / 3, data.n / 9])


class Stamp(BaseModel):
    at: datetime.datetime
    day: datetime.date
    amount: decimal.Decimal
    id: uuid.UUID
    raw: bytes


class StampModel(_Base):
    qualified_name = "stamp_model"
    output_schema = Stamp

    def predict(self, data: Query) -> Stamp:
        return Stamp(at=datetime.datetime(2024, 5, 6, 7, 8, data.n % 60, tzinfo=datetime.timezone.utc),
                     day=datetime.date(2024, 5, 6), amount=decimal.Decimal(data.n) / 4, id=uuid.UUID(int=data.n),
                     raw=b"n=%d" % data.n)


def test_outputs_with_datetime_decimal_uuid_fields_are_served_in_their_json_forms(tmp_path, redis_server):
    """Before, the route and the fast path sent json.dumps(output.model_dump()), which cannot encode these
    types: every request was a 500. Now both render in pydantic's JSON mode, a hit byte-identical to a miss."""
    cache = {"class_path": "cachedmodel.RedisCachingDecorator", "configuration": {"url": redis_server.url}}
    config = tmp_path / "rest_config.yaml"
    config.write_text(yaml.safe_dump({"models": [
        {"class_path": f"tests.integration.test_service_schemas.{model.__name__}", "create_endpoint": True,
         "decorators": decorators} for model, decorators in ((StampModel, [cache]),)]}))
    expected = {"at": "2024-05-06T07:08:05Z", "day": "2024-05-06", "amount": "1.25",
                "id": "00000000-0000-0000-0000-000000000005", "raw": "n=5"}
    with ModelService(config=config) as service, httpx.Client(base_url=service.url, timeout=10.0) as http:
        miss = http.post("/api/models/stamp_model/prediction", json={"n": 5})
        assert miss.status_code == 200 and miss.headers["x-cache"] == "miss", miss.text
        assert miss.json() == expected
        hit = http.post("/api/models/stamp_model/prediction", json={"n": 5})
        assert hit.status_code == 200 and hit.headers.get("x-cache") == "hit", hit.text
        assert hit.content == miss.content
        schema = http.get("/openapi.json").json()["components"]["schemas"]["Stamp"]["properties"]
        assert schema["at"]["format"] == "date-time" and schema["id"]["format"] == "uuid"


@pytest.mark.parametrize("serder", ["MessagePack", "JSON"])
def test_aliased_and_root_outputs_hit_over_http(tmp_path, redis_server, serder):
    cache = {"class_path": "cachedmodel.RedisCachingDecorator", "configuration": {"url": redis_server.url,
                                                                                  "serder": serder}}
    config = tmp_path / "rest_config.yaml"
    config.write_text(yaml.safe_dump({"models": [
        {"class_path": f"tests.integration.test_service_schemas.{model.__name__}", "create_endpoint": True, "decorators": [cache]}
        for model in (QuoteModel, PricesModel)]}))
    service = ModelService(config=config)
    try:
        service.start()
        with httpx.Client(base_url=service.url, timeout=10.0) as http, redis.Redis.from_url(redis_server.url) as store:
            for name, expected in (("quote_model", {"total_price": 5 / 3, "main_part": {"unit_price": 5 / 7}}),
                                   ("prices_model", [5 / 3, 5 / 9])):
                path = f"/api/models/{name}/prediction"
                miss = http.post(path, json={"n": 5})
                assert miss.status_code == 200 and miss.headers["x-cache"] == "miss", miss.text
                assert miss.json() == expected
                hit = http.post(path, json={"n": 5})
                assert hit.status_code == 200 and hit.headers.get("x-cache") == "hit", hit.text
                assert hit.content == miss.content
            assert store.dbsize() == 2
            metrics = http.get("/metrics").text
            assert not [line for line in metrics.splitlines()
                        if line.startswith("cachedmodel_cache_errors_total{") and not line.endswith(" 0.0")]
    except BaseException:
        print(service.logs())
        raise
    finally:
        service.cleanup()
