"""Hits for every kind of output schema (issue 9): a table of pydantic schemas x every serder x
compression against one real redis-server. A hit must be a real hit (the model is called once) and
return what the miss returned: same type, `==`, same model_dump() and model_dump_json()."""
from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import ipaddress
import itertools
import pathlib
import uuid
from typing import Any, Literal, NamedTuple, Optional, Union

import pytest
import redis
from ml_base import MLModel
from prometheus_client import REGISTRY
from pydantic import (AliasChoices, AliasPath, BaseModel, ConfigDict, Field, Json, PrivateAttr, RootModel,
                      computed_field, field_serializer, model_serializer)
from pydantic.alias_generators import to_camel
from typing_extensions import TypedDict

from cachedmodel import RedisCachingDecorator
from cachedmodel.testing.redis_server import RedisServer

pytestmark = pytest.mark.integration
CHOICES = [(serder, compression) for serder in ("JSON", "MessagePack") for compression in (False, True)]
_names = itertools.count()


class Request(BaseModel):
    n: int


class TableModel(MLModel):
    """Answers `make(data.n)` for any output schema; counts its calls."""

    display_name = description = "schema table model"
    version = "1"
    input_schema = Request

    def __init__(self, output_schema, make):
        self._output_schema = output_schema
        self._make = make
        self._name = f"schema_model_{next(_names)}"
        self.calls = 0

    @property
    def qualified_name(self) -> str:
        return self._name

    @property
    def output_schema(self):
        return self._output_schema

    def predict(self, data: Request):
        self.calls += 1
        return self._make(data.n)


# ---------------------------------------------------------------- the schemas
class Color(str, enum.Enum):
    red = "red"
    blue = "blue"


class Level(enum.IntEnum):
    low = 1
    high = 2


class Shape(enum.Enum):  # a plain Enum (not str/int): only its value is storable
    circle = "circle"
    square = 4


class Alias(BaseModel):
    charge_amount: float = Field(alias="chargeAmount")
    label: str = Field(alias="theLabel")


class ValidationAlias(BaseModel):
    charge_amount: float = Field(validation_alias="chargeAmount")


class SerializationAlias(BaseModel):
    charge_amount: float = Field(serialization_alias="chargeAmount")


class ChoicesAndPath(BaseModel):
    a: int = Field(validation_alias=AliasChoices("first", "premier"))
    b: int = Field(validation_alias=AliasPath("outer", 0))


class Generated(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel)
    charge_amount: float
    risk_level: Level


class GeneratedByName(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)
    charge_amount: float
    risk_level: Level


class Swapped(BaseModel):
    """Each field's alias is the other field's name: only keying by name is unambiguous."""
    a: int = Field(alias="b")
    b: str = Field(alias="a")


class SerializesByAlias(BaseModel):
    model_config = ConfigDict(serialize_by_alias=True, alias_generator=to_camel)
    charge_amount: float


class Inner(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel)
    unit_price: float
    when_made: datetime.date


class InnerSerializesByAlias(BaseModel):
    model_config = ConfigDict(serialize_by_alias=True)
    unit_price: float = Field(serialization_alias="unitPrice", validation_alias="price")


class Nested(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel)
    top_item: Inner
    all_items: list[Inner]
    by_key: dict[str, Inner]
    odd: InnerSerializesByAlias


class WithComputed(BaseModel):
    model_config = ConfigDict(extra="forbid")
    price: float

    @computed_field
    @property
    def doubled(self) -> float:
        return 2 * self.price


class HasComputedInside(BaseModel):
    inner: WithComputed


class Optionals(BaseModel):
    maybe_float: Optional[float] = None
    maybe_text: Optional[str]
    maybe_inner: Optional[Inner] = None


class Enums(BaseModel):
    color: Color
    level: Level
    shape: Shape
    literal: Literal["a", "b"]


class Times(BaseModel):
    naive: datetime.datetime
    aware: datetime.datetime
    day: datetime.date
    at: datetime.time
    span: datetime.timedelta


class Numbers(BaseModel):
    price: decimal.Decimal
    exact: decimal.Decimal
    big: int
    negative_zero: float
    tiny: float


class Ids(BaseModel):
    id: uuid.UUID
    ids: list[uuid.UUID]


class Tuples(BaseModel):
    pair: tuple[int, str]
    many: tuple[float, ...]
    frozen: frozenset[int]


class A(BaseModel):
    kind: Literal["a"] = "a"
    x: int


class B(BaseModel):
    kind: Literal["b"] = "b"
    x: int
    y: str


class Unions(BaseModel):
    int_or_str: Union[int, str]
    str_or_int: Union[int, str]
    int_or_float: Union[int, float]
    float_or_none: float | None
    model: Union[A, B]
    tagged: Union[A, B] = Field(discriminator="kind")
    either: list[Union[A, B]]


class Strict(BaseModel):
    model_config = ConfigDict(strict=True)
    when: datetime.datetime
    pair: tuple[int, int]
    price: decimal.Decimal
    id: uuid.UUID


class Extra(BaseModel):
    model_config = ConfigDict(extra="allow")
    charges: float


class Floats(RootModel[float]):
    pass


class HasRootInside(BaseModel):
    scores: RootModel[list[float]]
    table: Optional[Floats] = None


class Flag(enum.IntFlag):
    a = 1
    b = 2


@dataclasses.dataclass
class Point:
    x: int
    when: datetime.date


class Pair(TypedDict):
    x: int
    y: str


class Vector(NamedTuple):
    x: int
    y: float


class Exotic(BaseModel):
    raw: bytes
    flag: Flag
    path: pathlib.Path
    ip: ipaddress.IPv4Address
    point: Point
    pair: Pair
    vector: Vector
    one: Literal[1, "1"]
    tags: set[str]


class Excluded(BaseModel):
    a: int
    hidden: int = Field(default=0, exclude=True)


class HasExcludedInside(BaseModel):
    inner: Excluded


class Private(BaseModel):
    a: int
    _note: str = PrivateAttr(default="")


class FieldSerializer(BaseModel):
    a: float

    @field_serializer("a")
    def _rounded(self, value: float) -> float:
        return round(value, 1)


class ModelSerializer(BaseModel):
    a: int

    @model_serializer
    def _upper(self) -> dict:
        return {"A": self.a}


class HasModelSerializerInside(BaseModel):
    inner: ModelSerializer


DAY = datetime.date(2024, 2, 29)
INNER = Inner(unitPrice=1.25, whenMade=DAY)
SCHEMAS = {
    "alias": (Alias, lambda n: Alias(chargeAmount=n + 0.1, theLabel=f"l{n}")),
    "validation_alias": (ValidationAlias, lambda n: ValidationAlias(chargeAmount=n / 3)),
    "serialization_alias": (SerializationAlias, lambda n: SerializationAlias(charge_amount=n / 7)),
    "alias_choices_and_path": (ChoicesAndPath, lambda n: ChoicesAndPath(premier=n, outer=[n + 1])),
    "alias_generator": (Generated, lambda n: Generated(chargeAmount=n * 1.5, riskLevel=2)),
    "alias_generator_populate_by_name": (GeneratedByName, lambda n: GeneratedByName(charge_amount=n, risk_level=1)),
    "swapped_aliases": (Swapped, lambda n: Swapped(b=n, a="text")),
    "serialize_by_alias": (SerializesByAlias, lambda n: SerializesByAlias(chargeAmount=n + 0.5)),
    "nested_with_aliases": (Nested, lambda n: Nested(
        topItem=INNER, allItems=[INNER, Inner(unitPrice=n, whenMade=DAY)], byKey={"k": INNER},
        odd=InnerSerializesByAlias(price=n / 9))),
    "nested_computed_field": (HasComputedInside, lambda n: HasComputedInside(inner=WithComputed(price=n))),
    "root_scalar": (Floats, lambda n: Floats(n / 3)),
    "root_int": (RootModel[int], lambda n: RootModel[int](n)),
    "root_list": (RootModel[list[int]], lambda n: RootModel[list[int]]([n, n + 1])),
    "root_dict": (RootModel[dict[str, float]], lambda n: RootModel[dict[str, float]]({"a": n / 3, "b": -0.0})),
    "root_dict_int_keys": (RootModel[dict[int, str]], lambda n: RootModel[dict[int, str]]({n: "x", 2: "y"})),
    "root_of_models": (RootModel[list[Inner]], lambda n: RootModel[list[Inner]]([INNER, INNER])),
    "optional_none": (Optionals, lambda n: Optionals(maybe_text=None)),
    "optional_set": (Optionals, lambda n: Optionals(maybe_float=n / 3, maybe_text="t", maybe_inner=INNER)),
    "enums": (Enums, lambda n: Enums(color="blue", level=2, shape=4, literal="b")),
    "datetimes": (Times, lambda n: Times(
        naive=datetime.datetime(2024, 1, 2, 3, 4, 5, 678901), day=DAY, at=datetime.time(23, 59, 1, 5),
        aware=datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=5, minutes=30))),
        span=datetime.timedelta(days=2, seconds=7, microseconds=3))),
    "decimal_and_numbers": (Numbers, lambda n: Numbers(price=decimal.Decimal("10.10"), exact=decimal.Decimal("1E+3"),
                                                       big=2 ** 62 + n, negative_zero=-0.0, tiny=5e-324)),
    "uuid": (Ids, lambda n: Ids(id=uuid.UUID(int=n), ids=[uuid.UUID(int=7), uuid.uuid5(uuid.NAMESPACE_DNS, "x")])),
    "tuples": (Tuples, lambda n: Tuples(pair=(n, "a"), many=(0.1, 0.2, n / 3), frozen=frozenset({3, 1, 2}))),
    "unions": (Unions, lambda n: Unions(int_or_str=n, str_or_int="12", int_or_float=1.0, float_or_none=None,
                                        model=B(x=n, y="y"), tagged=A(x=n), either=[A(x=1), B(x=2, y="z")])),
    "strict": (Strict, lambda n: Strict(when=datetime.datetime(2024, 5, 6, 7, 8, 9), pair=(n, 2),
                                        price=decimal.Decimal("3.50"), id=uuid.UUID(int=n))),
    "extra_allow_with_extras": (Extra, lambda n: Extra(charges=n / 3, note="extra", score=n)),
    "extra_allow_without_extras": (Extra, lambda n: Extra(charges=n / 3)),
    "nested_root_models": (HasRootInside, lambda n: HasRootInside(scores=RootModel[list[float]]([n / 3]),
                                                                  table=Floats(0.5))),
    "exotic_types": (Exotic, lambda n: Exotic(raw=b"\x00ab", flag=3, path="/tmp/x", ip="10.0.0.1",
                                              point=Point(n, DAY), pair={"x": n, "y": "z"}, vector=(n, 2.5),
                                              one="1", tags={"a", "b"})),
    "exclude_true": (Excluded, lambda n: Excluded(a=n, hidden=5)),
    "exclude_true_nested": (HasExcludedInside, lambda n: HasExcludedInside(inner=Excluded(a=n, hidden=5))),
    "private_attribute_default": (Private, lambda n: Private(a=n)),
    "field_serializer": (FieldSerializer, lambda n: FieldSerializer(a=n / 3)),
    "model_serializer_nested": (HasModelSerializerInside, lambda n: HasModelSerializerInside(
        inner=ModelSerializer(a=n))),
}


@pytest.fixture(scope="module")
def server():
    with RedisServer() as started:
        yield started


def _alike(left, right) -> bool:
    """Same types all the way down, floats bit for bit, Decimals digit for digit; a datetime's tzinfo
    may be another class with the same offset (pydantic parses "+05:30" into its own TzInfo)."""
    if isinstance(left, datetime.tzinfo) and isinstance(right, datetime.tzinfo):
        return left.utcoffset(None) == right.utcoffset(None)
    if type(left) is not type(right):
        return False
    if isinstance(left, BaseModel):
        return _alike(vars(left), vars(right)) and _alike(left.__pydantic_extra__, right.__pydantic_extra__)
    if isinstance(left, dict):
        return list(left) == list(right) and all(_alike(left[k], right[k]) for k in left)
    if isinstance(left, (list, tuple)):
        return len(left) == len(right) and all(_alike(a, b) for a, b in zip(left, right))
    if isinstance(left, (datetime.datetime, datetime.time)):
        return left == right and _alike(left.tzinfo, right.tzinfo) if left.tzinfo else left == right
    if isinstance(left, (set, frozenset)):
        return left == right  # their repr's order may differ
    return repr(left) == repr(right)  # -0.0, Decimal('10.10'), enums, UUIDs, sets...


def _unordered_sets(value):
    """JSON of a set is a list in the set's iteration order, which depends on the string hash seed and
    the insertion history: two equal sets may render in different orders (seed 24 shows it here)."""
    if isinstance(value, dict):
        return {key: _unordered_sets(item) for key, item in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted(map(repr, value))
    if isinstance(value, (list, tuple)):
        return [_unordered_sets(item) for item in value]
    return value


def _equal_outputs(hit, miss) -> None:
    assert type(hit) is type(miss)
    assert hit == miss
    assert hit.model_dump() == miss.model_dump()
    if any(isinstance(item, (set, frozenset)) for item in miss.__dict__.values()):
        assert _unordered_sets(hit.model_dump(mode="python")) == _unordered_sets(miss.model_dump(mode="python"))
    else:
        assert hit.model_dump_json() == miss.model_dump_json()
    assert _alike(hit, miss), (hit, miss)


@pytest.mark.parametrize("serder, compression", CHOICES)
@pytest.mark.parametrize("schema", sorted(SCHEMAS))
def test_hit_returns_what_the_miss_returned(server, schema, serder, compression):
    output_schema, make = SCHEMAS[schema]
    model = TableModel(output_schema, make)
    decorator = RedisCachingDecorator(model, url=server.url, serder=serder, use_compression=compression)
    try:
        miss = decorator.predict(Request(n=5))
        hit = decorator.predict(Request(n=5))
        errors = sum(REGISTRY.get_sample_value("cachedmodel_cache_errors_total",
                                               {"model": model.qualified_name, "kind": kind}) or 0
                     for kind in ("decode", "encode"))
        assert (model.calls, errors) == (1, 0), "the second call must be a hit, without cache errors"
        _equal_outputs(hit, miss)
        _equal_outputs(decorator.get_cached(Request(n=5)), miss)
        with redis.Redis.from_url(server.url) as client:
            assert client.exists(decorator.cache_key(Request(n=5))) == 1
    finally:
        decorator.close()


class Ambiguous(BaseModel):
    """JSON has no datetime or Decimal: a stored string would come back as the str branch."""
    when: Union[str, datetime.datetime]
    price: Union[str, decimal.Decimal]


class AmbiguousOtherOrder(BaseModel):
    when: Union[datetime.datetime, str]


class AnyTuple(BaseModel):
    """Any keeps a tuple; JSON and MessagePack have only arrays."""
    anything: Any


class JsonField(BaseModel):
    """A Json[...] field validates from a JSON string, but holds the parsed value."""
    numbers: Json[list[int]]


@pytest.mark.parametrize("serder, compression", CHOICES)
@pytest.mark.parametrize("output_schema, make", [
    (Ambiguous, lambda n: Ambiguous(when=datetime.datetime(2024, 1, 1), price=decimal.Decimal("1.5"))),
    (AmbiguousOtherOrder, lambda n: AmbiguousOtherOrder(when=datetime.datetime(2024, 1, 1))),
    (AnyTuple, lambda n: AnyTuple(anything=(1, 2))),
    (JsonField, lambda n: JsonField(numbers="[1, 2]")),
], ids=["str_first", "datetime_first", "any_tuple", "json_field"])
def test_an_output_that_would_not_come_back_the_same_is_not_cached(server, output_schema, make, serder, compression):
    """Whatever a schema does, a hit never differs from the miss: values that would not round-trip
    faithfully are answered by the model every time (and counted), not served wrong."""
    model = TableModel(output_schema, make)
    decorator = RedisCachingDecorator(model, url=server.url, serder=serder, use_compression=compression)
    try:
        first = decorator.predict(Request(n=1))
        second = decorator.predict(Request(n=1))
        _equal_outputs(second, first)
        if model.calls == 1:  # cached after all: then it must be faithful (checked above)
            return
        assert model.calls == 2
        with redis.Redis.from_url(server.url) as client:
            assert client.exists(decorator.cache_key(Request(n=1))) == 0
    finally:
        decorator.close()
