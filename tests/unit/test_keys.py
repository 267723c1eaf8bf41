"""Cache keys: deterministic, type-aware, bound to field names, namespaced by model and options."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from cachedmodel.keys import KeyBuilder, canonical_bytes, namespace_bytes
from cachedmodel.testing.insurance_like_model import InsuranceLikeModel, InsuranceOutput, Sex

REPO = Path(__file__).resolve().parents[2]

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
                    st.floats(allow_nan=False), st.text(max_size=20), st.binary(max_size=20))


class Anything(BaseModel):
    a: object = None
    b: object = None


def builder(**namespace_overrides) -> KeyBuilder:
    namespace = dict(qualified_name="m", version="1", prefix="", hashing_fields=["a", "b"],
                     reduced_precision_fields=[], number_of_places=None, serder="MessagePack",
                     use_compression=False, value_format=1, output_fields=["y", "z"])
    namespace.update(namespace_overrides)
    return KeyBuilder(namespace_bytes(**namespace), namespace["prefix"], namespace["hashing_fields"])


KEYS = builder()


def _same(x, y) -> bool:
    """Identical values: same type and same repr (so True/1/1.0 and 0.0/-0.0 count as different)."""
    return type(x) is type(y) and repr(x) == repr(y)


@settings(max_examples=300, deadline=None)
@given(a=scalars, b=scalars)
def test_equal_inputs_give_equal_keys(a, b):
    assert KEYS.key(Anything(a=a, b=b)) == KEYS.key(Anything(a=a, b=b))


@settings(max_examples=300, deadline=None)
@given(a1=scalars, b1=scalars, a2=scalars, b2=scalars)
def test_distinct_inputs_give_distinct_keys(a1, b1, a2, b2):
    key1, key2 = KEYS.key(Anything(a=a1, b=b1)), KEYS.key(Anything(a=a2, b=b2))
    assert (key1 == key2) == (_same(a1, a2) and _same(b1, b2))


@pytest.mark.parametrize("left, right", [(True, 1), (1, 1.0), (1, "1"), (True, "True"), (None, 0),
                                          (False, 0), (b"1", "1"), (0.0, -0.0), (1, [1])])
def test_types_are_told_apart(left, right):
    assert KEYS.key(Anything(a=left)) != KEYS.key(Anything(a=right))


class Nested(BaseModel):
    m: dict = {}


def test_equal_dicts_give_one_key_whatever_their_order():
    """MessagePack writes maps in insertion order; a JSON body may list keys in any order."""
    assert {"x": 1, "y": 2} == {"y": 2, "x": 1}
    assert KEYS.key(Anything(a={"x": 1, "y": 2})) == KEYS.key(Anything(a={"y": 2, "x": 1}))
    assert KEYS.key(Anything(a=[{"x": 1, "y": {"p": 1, "q": 2}}])) == KEYS.key(Anything(a=[{"y": {"q": 2, "p": 1}, "x": 1}]))
    assert KEYS.key(Anything(a=Nested(m={"x": 1, "y": 2}))) == KEYS.key(Anything(a=Nested(m={"y": 2, "x": 1})))
    assert canonical_bytes({"b": 1, 1: 2}) == canonical_bytes({1: 2, "b": 1})
    assert KEYS.key(Anything(a={"x": 1, "y": 2})) != KEYS.key(Anything(a={"x": 2, "y": 1}))
    assert KEYS.key(Anything(a={"x": 1})) != KEYS.key(Anything(a=[["x", 1]]))


def test_each_value_is_bound_to_its_field():
    assert KEYS.key(Anything(a=1, b=2)) != KEYS.key(Anything(a=2, b=1))
    assert KEYS.key(Anything(a="ab", b="c")) != KEYS.key(Anything(a="a", b="bc"))


@pytest.mark.parametrize("change", [dict(qualified_name="other"), dict(version="2"), dict(prefix="p"),
                                    dict(hashing_fields=["a"]), dict(serder="JSON"),
                                    dict(use_compression=True), dict(reduced_precision_fields=["a"]),
                                    dict(number_of_places=2), dict(value_format=2),
                                    dict(output_fields=["y"]), dict(output_fields=["z", "y"]), dict(epoch=1)])
def test_namespace_changes_every_key(change):
    data = Anything(a=1.5, b="x")
    assert builder(**change).key(data) != KEYS.key(data)


def test_each_epoch_is_a_namespace_of_its_own_and_epoch_zero_keeps_the_old_keys():
    """Bumping the epoch invalidates every entry (O(1), nothing deleted); epoch 0 is what every earlier
    version wrote, so upgrading never empties a cache."""
    data = Anything(a=1.5, b="x")
    assert builder(epoch=0).key(data) == KEYS.key(data)
    keys = {builder(epoch=epoch).key(data) for epoch in (0, 1, 2, 2 ** 31 - 1)}
    assert len(keys) == 4


def test_key_shape_is_short_prefix_plus_base64url():
    key = builder(prefix="cm").key(Anything(a=1)).decode()
    assert key.startswith("cm:") and len(key) == 3 + 22
    assert set(key[3:]) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert len(KEYS.key(Anything(a=1))) == 22


def test_canonical_bytes_of_special_types_are_stable():
    import datetime, decimal, enum, uuid

    class Color(enum.Enum):
        red = "red"

    values = [Color.red, datetime.datetime(2024, 1, 2, 3, 4, 5), datetime.date(2024, 1, 2), decimal.Decimal("1.10"),
              uuid.UUID(int=7), {3, 1, 2}, 2 ** 80]
    encoded = [canonical_bytes(value) for value in values]
    assert encoded == [canonical_bytes(value) for value in values]
    assert canonical_bytes(Color.red) != canonical_bytes("red")  # a plain Enum is tagged
    assert canonical_bytes({1, 2, 3}) == canonical_bytes({3, 2, 1})
    with pytest.raises(TypeError, match="object"):
        canonical_bytes(object())


def test_big_integers_do_not_break_the_packer():
    big = KEYS.key(Anything(a=2 ** 80))
    assert KEYS.key(Anything(a=2 ** 80)) == big != KEYS.key(Anything(a=str(2 ** 80)))
    assert KEYS.key(Anything(a=1)) == KEYS.key(Anything(a=1))  # the per-thread packer recovered


SCRIPT = """
from tests.unit.test_keys import KEYS, Anything
for a, b in [(1, 'x'), (True, None), (1.0, b'z'), (2 ** 80, -0.5), ('é', [1, 'a']),
             ({'alpha', 'beta', 'gamma', 'delta', 'epsilon'}, {'k' + str(i): i for i in range(8)})]:
    print(KEYS.key(Anything(a=a, b=b)).decode())
"""


def test_keys_are_identical_in_another_process_with_another_hash_seed():
    here = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, cwd=REPO,
                          env={**os.environ, "PYTHONHASHSEED": "1", "PYTHONPATH": str(REPO)}).stdout
    there = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, cwd=REPO,
                           env={**os.environ, "PYTHONHASHSEED": "4242", "PYTHONPATH": str(REPO)}).stdout
    assert here == there and len(here.split()) == 6  # the set iterates in a seed-dependent order


def test_known_key_is_pinned():
    """The format is a contract (keys survive restarts and upgrades): changing it must be deliberate."""
    assert KEYS.key(Anything(a=1, b="x")).decode() == PINNED


PINNED = "FtpZBQR5OnkOvjtnaq7qtg"


class Open(BaseModel):
    """extra="allow": undeclared fields are kept in __pydantic_extra__, not in __dict__."""
    model_config = {"extra": "allow"}
    a: object = None
    b: object = None


OPEN_KEYS = KeyBuilder(namespace_bytes(qualified_name="m", version="1", prefix="", hashing_fields=["a", "b"],
                                       reduced_precision_fields=[], number_of_places=None, serder="MessagePack",
                                       use_compression=False, value_format=1, output_fields=["y", "z"]),
                       "", ["a", "b"], extras=True)


def test_extra_fields_are_keyed_canonically():
    base = OPEN_KEYS.key(Open(a=1, b="x"))
    assert base == KEYS.key(Anything(a=1, b="x")) == PINNED.encode()  # no extras: the key it always had
    with_x1, with_x2 = OPEN_KEYS.key(Open(a=1, b="x", x=1)), OPEN_KEYS.key(Open(a=1, b="x", x=2))
    assert len({base, with_x1, with_x2}) == 3
    assert OPEN_KEYS.key(Open(a=1, b="x", x=1, y={"p": 1, "q": 2})) == OPEN_KEYS.key(Open(y={"q": 2, "p": 1}, x=1, b="x", a=1))
    assert OPEN_KEYS.key(Open(a=1, b="x", x=True)) != with_x1  # extras keep their types apart too
    assert OPEN_KEYS.key(Open(a=1, b="x", c=1)) != OPEN_KEYS.key(Open(a=1, b="x", d=1))  # bound to their names
    assert KEYS.key(Open(a=1, b="x", x=1)) == base  # without extras=True (explicit hashing fields) they are ignored


def test_nested_models_with_extra_fields_are_told_apart():
    assert KEYS.key(Anything(a=Open(a=1, x=1))) != KEYS.key(Anything(a=Open(a=1, x=2)))
    assert KEYS.key(Anything(a=Open(a=1, x=1, y=2))) == KEYS.key(Anything(a=Open(y=2, a=1, x=1)))
    assert KEYS.key(Anything(a=Open(a=1))) == KEYS.key(Anything(a=Open(a=1)))
    assert canonical_bytes(Open(a=1)) == canonical_bytes(Anything(a=1))  # no extras: encoded as before


def test_keys_with_extra_fields_are_pinned():
    """Extra fields are part of the key format (a contract like the rest): changing it must be deliberate."""
    assert OPEN_KEYS.key(Open(a=1, b="x", tier="gold", n=2)).decode() == "jtwNLDjxtLbG4ei91Rvbeg"
    assert OPEN_KEYS.key(Open(n=2, tier="gold", b="x", a=1)).decode() == "jtwNLDjxtLbG4ei91Rvbeg"
    assert KEYS.key(Anything(a=Open(a=1, z=[1]))).decode() == "WqZ-h8KSbSh3HK1M0nJAwQ"


@settings(max_examples=200, deadline=None)
@given(a=scalars, b=scalars)
def test_remembered_keys_are_the_keys_computed_afresh(a, b):
    """Small bodies' keys are remembered per builder: a remembered key must be the one blake2b gives."""
    data = Anything(a=a, b=b)
    warm = builder()
    first, again = warm.key(data), warm.key(data)  # the second comes from the memory (when small enough)
    assert first == again == builder().key(data)


def test_the_memory_of_keys_is_bounded():
    keys = builder()
    for index in range(KeyBuilder.KNOWN_MAX + 10):
        keys.key(Anything(a=index))
    assert 0 < len(keys._known) <= KeyBuilder.KNOWN_MAX
    keys.key(Anything(a="x" * (KeyBuilder.KNOWN_BODY_BYTES + 1)))  # too large to remember
    assert all(len(body) <= KeyBuilder.KNOWN_BODY_BYTES for body in keys._known)


class Scalars(BaseModel):
    a: int | float | str | bytes | bool | None = None
    b: Sex | None = None


@settings(max_examples=200, deadline=None)
@given(a=scalars, b=st.one_of(st.none(), st.sampled_from(Sex)))
def test_uninspected_scalar_values_give_the_inspected_key(a, b):
    """scalars=True skips looking at the values' types: for scalar-annotated fields that must change no key."""
    data = Scalars(a=a, b=b)
    namespace = namespace_bytes(qualified_name="m", version="1", prefix="p", hashing_fields=["a", "b"],
                                reduced_precision_fields=[], number_of_places=None, serder="MessagePack",
                                use_compression=False, value_format=1)
    inspected = KeyBuilder(namespace, "p", ["a", "b"]).key(data)
    assert KeyBuilder(namespace, "p", ["a", "b"], scalars=True).key(data) == inspected


class WithOptions(InsuranceLikeModel):
    """The insurance-like model whose input has one more field, a dict."""

    class Input(BaseModel):
        age: int
        options: dict[str, list[dict[str, int]]]

    input_schema = Input
    output_schema = InsuranceOutput


def test_the_decorator_inspects_values_only_when_a_hashing_field_may_hold_a_container():
    from cachedmodel import RedisCachingDecorator

    assert RedisCachingDecorator(InsuranceLikeModel(), url="redis://127.0.0.1:1")._keys._inspect is False
    decorator = RedisCachingDecorator(WithOptions(), url="redis://127.0.0.1:1")
    assert decorator._keys._inspect is True
    first = WithOptions.Input(age=1, options={"x": [{"q": 1, "p": 2}], "y": []})
    second = WithOptions.Input(age=1, options={"y": [], "x": [{"p": 2, "q": 1}]})
    assert decorator.cache_key(first) == decorator.cache_key(second)  # dicts sorted at any depth
    assert RedisCachingDecorator(WithOptions(), url="redis://127.0.0.1:1", hashing_fields=["age"])._keys._inspect is False
