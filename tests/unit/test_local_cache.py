"""The in-process tier: LRU bound and TTL expiry, with a fake clock."""
import pytest

from cachedmodel.local_cache import LocalCache


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_lru_evicts_the_least_recently_used():
    cache = LocalCache(2, 60, Clock())
    cache.put("a", 1), cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3 and len(cache) == 2


def test_entries_expire_after_ttl_and_are_dropped():
    clock = Clock()
    cache = LocalCache(10, 5.0, clock)
    cache.put("a", 1)
    clock.now = 4.99
    assert cache.get("a") == 1
    clock.now = 5.0
    assert cache.get("a") is None and len(cache) == 0


def test_put_refreshes_value_and_ttl():
    clock = Clock()
    cache = LocalCache(10, 5.0, clock)
    cache.put("a", 1)
    clock.now = 4
    cache.put("a", 2)
    clock.now = 8
    assert cache.get("a") == 2
    cache.clear()
    assert cache.get("a") is None


def test_invalid_bounds():
    with pytest.raises(ValueError):
        LocalCache(0, 1)
    with pytest.raises(ValueError):
        LocalCache(1, 0)


def test_threads_hammering_one_cache_see_no_errors_and_the_bound_holds():
    """Reads take no lock and race the writes: no errors, no broken map, and the bound holds."""
    import threading

    cache = LocalCache(50, 60)
    failures = []

    def work(offset):
        try:
            for index in range(3000):
                key = f"k{(index * 7 + offset) % 200}"
                cache.put(key, index)
                cache.get(f"k{(index + offset) % 200}")
        except Exception as error:  # noqa: BLE001
            failures.append(error)

    threads = [threading.Thread(target=work, args=(offset,)) for offset in range(8)]
    [thread.start() for thread in threads]
    [thread.join() for thread in threads]
    assert not failures and len(cache) <= 50


def test_ttl_must_be_a_finite_positive_number():
    with pytest.raises(ValueError):
        LocalCache(1, float("nan"))


def test_outputs_are_kept_only_when_a_shallow_copy_is_a_new_output():
    import datetime
    import enum
    from typing import Annotated, Literal, Optional

    from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, RootModel

    from cachedmodel.local_cache import fresh_copy, shareable_output

    class Color(enum.Enum):
        RED = "red"

    class Flat(BaseModel):
        charges: float
        count: Annotated[int, Field(ge=0)] = 0
        label: Optional[str] = None
        color: Color = Color.RED
        kind: Literal["a", "b"] = "a"
        when: datetime.datetime | None = None

    class Nested(BaseModel):
        items: list[float]

    class WithModel(BaseModel):
        inner: Flat

    class Extra(BaseModel):
        model_config = ConfigDict(extra="allow")
        charges: float

    class Private(BaseModel):
        charges: float
        _seen: list = PrivateAttr(default_factory=list)

    assert shareable_output(Flat)
    assert not any(shareable_output(schema) for schema in (Nested, WithModel, Extra, Private, RootModel[float]))
    original = Flat(charges=1.5, label="x")
    copy = fresh_copy(original)
    assert copy == original and copy is not original and copy.model_dump() == original.model_dump()
    assert copy.model_fields_set == {"charges", "label"}
    copy.charges, copy.count = 2.5, 3
    assert original.charges == 1.5 and original.model_fields_set == {"charges", "label"}
    assert copy.model_fields_set == {"charges", "label", "count"}
