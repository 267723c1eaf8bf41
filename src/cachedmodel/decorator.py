"""RedisCachingDecorator: memoizes an ml_base model's predictions in Redis (plus an optional local tier).

Request path of `predict(data)`:
  input (rounded copy if reduced precision) -> key -> local tier -> Redis GET (unless the circuit is
  open) -> on a miss: the model, once per concurrent burst of the key (single-flight) -> SET.
Every cache failure falls back to the model, is counted, and is logged once per burst.
An input the input schema rejects goes to the model as it came, uncached (its own error surfaces).
Only what a hit would return unchanged (same types, ==) and what a JSON response can carry (no
NaN/Inf) is stored; a read entry that does not decode, validate or hold only finite floats is corrupt:
the model answers and the SET replaces it.

ml_base decorators forward attribute writes to the wrapped model, so state lives in self.__dict__.
"""
from __future__ import annotations

import concurrent.futures
import datetime
import decimal
import logging
import math
import os
import threading
import time
from contextvars import ContextVar
from typing import Any, Callable

from ml_base.decorator import MLModelDecorator
from ml_base.ml_model import MLModel
from pydantic import BaseModel, RootModel

from cachedmodel.annotations import allows_float, scalar_annotation
from cachedmodel.backend import CacheBackendError, make_backend
from cachedmodel.batch import RowModel, row_types
from cachedmodel.circuit import CLOSED, CircuitBreaker
from cachedmodel.codecs import VALUE_FORMAT, DecodeError, ValueCodec
from cachedmodel.freshness import should_refresh, unwrap, wrap
from cachedmodel.keys import KeyBuilder, namespace_bytes
from cachedmodel.local_cache import LocalCache, fresh_copy, shareable_output
from cachedmodel.metrics import BurstLogger, ModelMetrics
from cachedmodel.options import CacheOptions, ConfigurationError, parse_options
from cachedmodel.redis_info import SAMPLER
from cachedmodel.singleflight import SingleFlight

logger = logging.getLogger("cachedmodel")
_perf_counter = time.perf_counter
_LEASE_SUFFIX = b"~lease"  # the shared single-flight lease of a key lives beside it


def _identical(left: Any, right: Any) -> bool:
    """Equal AND alike all the way down: same types, floats bit for bit (-0.0), Decimals digit for digit
    ("1.10"), datetimes with the same offset (a tzinfo class may differ), models field by field
    (extras too). `==` alone says True == 1 == 1.0 and Decimal("1.1") == Decimal("1.10")."""
    kind = type(left)
    if kind is not type(right):
        return False
    if isinstance(left, BaseModel):
        return (_identical(left.__dict__, right.__dict__)
                and _identical(left.__pydantic_extra__ or {}, right.__pydantic_extra__ or {}))
    if kind is float:
        return left == right and math.copysign(1.0, left) == math.copysign(1.0, right)
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(_identical(value, right[key]) for key, value in left.items())
    if isinstance(left, (list, tuple)):
        return len(left) == len(right) and all(map(_identical, left, right))
    if isinstance(left, (datetime.datetime, datetime.time)):
        return left == right and left.isoformat() == right.isoformat()
    if isinstance(left, decimal.Decimal):
        return left.as_tuple() == right.as_tuple()
    return left == right


def _finite(value: Any) -> bool:
    """No NaN or +-Inf float anywhere in a built output (fields, extras, nested models, containers)."""
    if isinstance(value, float):
        return value - value == 0.0  # nan - nan and inf - inf are nan
    if isinstance(value, BaseModel):
        return _finite(value.__dict__) and _finite(value.__pydantic_extra__ or ())
    if isinstance(value, dict):
        return all(map(_finite, value.values()))
    if isinstance(value, (list, tuple, set, frozenset)):
        return all(map(_finite, value))
    return True


def _was_stored(outcome: tuple[BaseModel, bool]) -> bool:
    return outcome[1]


class _NoAnswer:
    """A lookup that gave no answer and was no miss either: why (the bypass reason) and whether the
    model's output may still be stored."""

    __slots__ = ("reason", "store")

    def __init__(self, reason: str, store: bool):
        self.reason, self.store = reason, store


# Redis just failed to answer (connection/timeout...): the model answers and the SET is skipped, so one
# request pays at most one Redis timeout
_UNREACHABLE = _NoAnswer("redis_error", store=False)
_REDIS_ERROR = _NoAnswer("redis_error", store=True)       # Redis answered with an error (e.g. OOM)
_POOL_EXHAUSTED = _NoAnswer("pool_exhausted", store=False)
_CIRCUIT_OPEN = _NoAnswer("circuit_open", store=False)

# A per-request hint, (decorator, key, outcome): the HTTP fast path's aget_cached(remember_miss=True)
# just looked this key up and missed (outcome None) or could not reach Redis (_UNREACHABLE). The
# context follows the request into the route's worker thread, where predict() takes the outcome
# instead of asking Redis again: an HTTP miss costs one GET, a hung Redis one timeout.
_PRIOR_LOOKUP: ContextVar[tuple | None] = ContextVar("cachedmodel_prior_lookup", default=None)


class _RowsMismatch(ValueError):
    """A batch model's output does not have one row per input row."""


class RedisCachingDecorator(MLModelDecorator):
    """Caches predictions of the decorated model in Redis; options, key format and failure behaviour in docs/decorator.md."""

    def __init__(self, model: MLModel | None = None, **configuration: Any) -> None:
        options = parse_options(configuration)
        super().__init__(model=None, **configuration)
        state = self.__dict__
        state["options"] = options
        state["_backend"] = make_backend(options)
        state["_breaker"] = CircuitBreaker(options.circuit_breaker_failures, options.circuit_breaker_reset_seconds)
        state["_local"] = (LocalCache(options.local_cache_size, options.local_cache_ttl_seconds)
                           if options.local_cache_size else None)
        state["_flight"] = SingleFlight(linger_seconds=options.socket_timeout) if options.single_flight else None
        state["_codec"] = ValueCodec(options.serder, options.use_compression)
        state["_keys"] = None
        state["_key_trace"] = None  # callable(key) per request, in request order (cachedmodel-advise traces)
        state["_rows"] = None  # the row view of a batch model (per-row caching), see cachedmodel.batch
        state["_stale"] = bool(options.stale_seconds)  # stale-while-revalidate entries (cachedmodel.freshness)
        state["_store_ttl"] = (options.ttl_seconds + options.stale_seconds) if options.stale_seconds \
            else options.ttl_seconds
        state["_refreshing"] = set()  # keys a background refresh runs for, in this process
        state["_refresh_lock"] = threading.Lock()
        state["_refresher"] = None  # a small thread pool, made at the first refresh
        if model is not None:
            self.set_model(model)

    def __repr__(self) -> str:
        return f"RedisCachingDecorator({self.__dict__['_model']!s}, redis={self._backend.describe})"

    # ---------------------------------------------------------------- setup
    def set_model(self, model: MLModel) -> "RedisCachingDecorator":
        """Wrap `model`; checks field names against its schemas and fixes the key namespace."""
        if not isinstance(model, MLModel):
            raise ValueError("Only objects of type MLModel can be wrapped with MLModelDecorator instances.")
        options: CacheOptions = self.options
        input_type = model.input_schema
        output_type = model.output_schema
        rows = row_types(input_type, output_type)
        if rows is not None:
            return self._set_batch_model(model, *rows)
        input_fields = dict(input_type.model_fields)
        name = model.qualified_name

        hashing_fields = options.hashing_fields or tuple(input_fields)
        for option, names in (("hashing_fields", hashing_fields),
                              ("reduced_precision_fields", options.reduced_precision_fields or ())):
            for field in names:
                if field not in input_fields:
                    raise ConfigurationError(f"option '{option}': '{field}' is not an input field of model "
                                             f"{name} (input fields: {', '.join(input_fields)})")
        for field in options.reduced_precision_fields or ():
            if not allows_float(input_fields[field].annotation):
                raise ConfigurationError(f"option 'reduced_precision_fields': input field '{field}' of model "
                                         f"{name} is not a float field")

        namespace = namespace_bytes(
            qualified_name=name, version=model.version, prefix=options.prefix, hashing_fields=hashing_fields,
            reduced_precision_fields=options.reduced_precision_fields or (),
            number_of_places=options.number_of_places, serder=options.serder,
            use_compression=options.use_compression, value_format=VALUE_FORMAT,
            output_fields=tuple(output_type.model_fields), stale_header=bool(options.stale_seconds),
            epoch=options.epoch)
        super().set_model(model)
        state = self.__dict__
        state["_input_type"] = input_type
        state["_output_type"] = output_type
        state["_output_fields"] = tuple(output_type.model_fields)
        state["_validate_output"] = output_type.model_validate
        state["_output_is_root"] = issubclass(output_type, RootModel)
        state["_output_extra"] = output_type.model_config.get("extra") == "allow"
        state["_keep_outputs"] = shareable_output(output_type)  # local tier: keep built outputs (local_cache)
        state["_round_fields"] = options.reduced_precision_fields or ()
        state["_metrics"] = ModelMetrics(name)
        state["_metrics"].epoch.set(options.epoch)
        state["_events"] = BurstLogger(name)
        # extra="allow" inputs: undeclared fields change the input, so they are keyed (unless the
        # hashing fields were chosen explicitly: then exactly those fields form the key)
        keyed_extras = input_type.model_config.get("extra") == "allow" and not options.hashing_fields
        scalars = all(scalar_annotation(input_fields[field].annotation) for field in hashing_fields)
        state["_keys"] = KeyBuilder(namespace, options.prefix, hashing_fields, extras=keyed_extras, scalars=scalars)
        state["_predict_one"] = self._model_predict  # what a background refresh calls
        if options.redis_info_interval_seconds:
            SAMPLER.register(name, self, self._backend.info, options.redis_info_interval_seconds)
        return self

    def _set_batch_model(self, model: MLModel, row_input: type, row_output: type) -> "RedisCachingDecorator":
        """A batch model: rows are cached by a row view that shares this decorator's backend, breaker,
        local tier, single-flight and codec (options name Row fields; checked against the row schema)."""
        view = object.__new__(RedisCachingDecorator)
        shared = ("_configuration", "options", "_backend", "_breaker", "_local", "_flight", "_codec")
        view.__dict__.update({name: self.__dict__[name] for name in shared})
        shared += ("_stale", "_store_ttl", "_refreshing", "_refresh_lock")
        view.__dict__.update({name: self.__dict__[name] for name in shared})
        view.__dict__.update(_model=None, _keys=None, _key_trace=None, _rows=None, _refresher=None)
        view.set_model(RowModel(model.qualified_name, model.version, row_input, row_output))
        view.__dict__["_predict_one"] = lambda row: self._rows_model_answers([row])[0]  # refreshes of one row
        super().set_model(model)
        state = self.__dict__
        state.update(_rows=view, _keys=view._keys, _metrics=view._metrics, _events=view._events,
                     _input_type=model.input_schema, _output_type=model.output_schema, _round_fields=())
        return self

    # ---------------------------------------------------------------- public API
    def cache_key(self, data: Any) -> str:
        """The Redis key of an input (after reduced precision), stable across processes and machines.
        For a batch model: the key of one row (a row's key is the same in and out of batches)."""
        self._require_model()
        if self._rows is not None:
            return self._rows.cache_key(data)
        return self._keys.key(self._prepare_input(data)).decode()

    def predict(self, data: Any) -> BaseModel:
        """A cached prediction when there is one, otherwise the model's (then stored)."""
        # The state is read from self.__dict__: MLModelDecorator's __getattr__ makes every self.<name>
        # four times slower than a subscript, and this is the hottest path (a local hit is ~3 us).
        state = self.__dict__
        keys = state["_keys"]
        if keys is None:
            self._require_model()
        if state["_rows"] is not None:
            return self._predict_rows(data)
        metrics = state["_metrics"]
        metrics.requests.inc()  # exactly once per prediction: it ends as a hit, a miss or a bypass
        if type(data) is not state["_input_type"] or state["_round_fields"]:
            try:
                data = self._prepare_input(data)
            except Exception:  # noqa: BLE001 - not a valid input: the model gets it as it came and
                metrics.bypasses["invalid_input"].inc()  # answers (or raises its own error) uncached
                return self._model.predict(data=data)
        try:
            key = keys.key(data)
        except Exception as error:  # noqa: BLE001 - an input we cannot key is predicted uncached
            self._count_error("encode", f"cannot build a key: {error}")
            metrics.bypasses["unkeyable"].inc()
            return self._model.predict(data=data)
        if state["_key_trace"] is not None:
            state["_key_trace"](key)
        prior = _PRIOR_LOOKUP.get()
        if prior is not None and prior[0] is self:
            _PRIOR_LOOKUP.set(None)  # used once: any later predict() in this context looks up itself
            output = prior[2] if prior[1] == key else self._lookup(key, data)
        else:
            local = state["_local"]
            entry = local.get(key) if local is not None else None
            if entry is None:
                output = self._redis_lookup(key, data)
            elif entry[1] is not None:  # the hottest path, _local_hit inlined: a copy of the kept output
                metrics.local_hits.inc()
                return fresh_copy(entry[1])
            else:
                return self._local_hit(entry)
        store = True
        if output is None:
            metrics.misses.inc()
        elif type(output) is _NoAnswer:
            metrics.bypasses[output.reason].inc()
            store = output.store
        else:
            return output
        flight = self._flight
        if flight is None:
            return self._predict_and_store(key, data, store)[0]
        (output, _), shared = flight.do(key, lambda: self._predict_and_store(key, data, store),
                                        linger_if=_was_stored)
        if shared:
            self._metrics.shared.inc()
            return output.model_copy() if isinstance(output, BaseModel) else output
        return output

    def get_cached(self, data: Any) -> BaseModel | None:
        """Hit-only lookup: the cached output for `data`, or None (miss or any error). Never calls the model."""
        try:
            self._require_model()
            if self._rows is not None:
                return None  # batches are looked up row by row in predict()
            output = self._lookup(self._keys.key(self._prepare_input(data)))
            if output is None or type(output) is _NoAnswer:
                return None
            self._metrics.requests.inc()  # a served hit is a prediction; a miss is only a lookup
            return output
        except Exception as error:  # noqa: BLE001
            self._count_error("other", f"get_cached failed: {error}")
            return None

    async def aget_cached(self, data: Any, remember_miss: bool = False,
                          build: Callable[[bytes, Callable[[bytes], BaseModel]], Any] | None = None) -> Any:
        """Async hit-only lookup (redis.asyncio, one client per event loop); None on miss or any error.

        remember_miss=True (the HTTP fast path, which hands misses to the route): a miss is remembered in
        the caller's context, so the predict() of the same input in that request skips its own lookup
        (and counts the request as the miss or bypass this lookup was). A hit is counted as a request.
        build(entry bytes, build_output): what a hit returns instead of the output model; the fast path
        passes one that remembers each entry's rendered answer, so a hot entry is decoded and rendered
        once, not on every hit. An exception it raises makes the entry a miss (counted as unreadable)."""
        try:
            self._require_model()
            if self._rows is not None:
                return None  # batches are looked up row by row by the route's predict()
            key = self._keys.key(self._prepare_input(data))
            output = self._local_lookup(key, build)
            if output is None:
                outcome = None
                if self._breaker.allow():
                    started = _perf_counter()
                    try:
                        output = self._from_redis(key, await self._backend.aget(key), data, build)
                    except CacheBackendError as error:
                        outcome = self._backend_failed(error)
                    finally:
                        self._metrics.lookup_seconds.observe(_perf_counter() - started)
                else:
                    outcome = _CIRCUIT_OPEN
                if output is None:
                    if remember_miss:
                        _PRIOR_LOOKUP.set((self, key, outcome))
                    return None
            self._metrics.requests.inc()
            if self._key_trace is not None:
                self._key_trace(key)
            return output
        except Exception as error:  # noqa: BLE001
            self._count_error("other", f"aget_cached failed: {error}")
            return None

    def set_key_trace(self, trace) -> None:
        """Call `trace(key)` once per prediction served, in request order (None: off). Keys are digests,
        never inputs; the model service sets this from CACHEDMODEL_KEY_TRACE for cachedmodel-advise."""
        self.__dict__["_key_trace"] = trace

    @property
    def caches_rows(self) -> bool:
        """True for a batch model (RootModel lists in and out): cached row by row, see cachedmodel.batch."""
        return self.__dict__.get("_rows") is not None

    @property
    def circuit_state(self) -> str:
        """closed, open or half_open."""
        return self._breaker.state

    def close(self) -> None:
        """Release the sync connection pool (async clients: `await aclose()` on their loop)."""
        metrics = self.__dict__.get("_metrics")
        if metrics is not None:
            SAMPLER.unregister(metrics.model, self._backend.info)
        for owner in (self, self.__dict__.get("_rows")):
            refresher = owner.__dict__.get("_refresher") if owner is not None else None
            if refresher is not None:
                refresher.shutdown(wait=False, cancel_futures=True)
        self._backend.close()

    async def aclose(self) -> None:
        await self._backend.aclose()

    # ---------------------------------------------------------------- internals
    def _require_model(self) -> None:
        if self.__dict__.get("_keys") is None:
            raise RuntimeError("RedisCachingDecorator has no model yet: call set_model(model) first")

    def _prepare_input(self, data: Any) -> BaseModel:
        """The input as the model's schema; reduced precision fields rounded on a copy (caller's untouched)."""
        if not isinstance(data, self._input_type):
            data = self._input_type.model_validate(data if isinstance(data, dict) else dict(data))
        round_fields = self._round_fields
        if round_fields:
            values = data.__dict__
            places = self.options.number_of_places
            updates = {field: round(values[field], places) for field in round_fields
                       if type(values[field]) is float}
            if updates:
                data = data.model_copy(update=updates)
        return data

    def _output_values(self, output: BaseModel) -> list:
        """What is stored: the field values in schema order (+ a dict of extras for extra="allow")."""
        values = [output.__dict__[field] for field in self._output_fields]
        extra = output.__pydantic_extra__
        if extra:
            values.append(extra)
        return values

    def _build_output(self, stored: bytes) -> BaseModel:
        """Stored bytes -> an output_schema instance (validation restores enums, nested models...).
        Validated by field NAME only (aliases may differ per direction or be another field's name) and
        laxly (a strict schema must accept the stored JSON forms of its datetimes, tuples...)."""
        values = self._codec.decode(stored)
        fields = self._output_fields
        if self._output_is_root:
            if len(values) != 1:
                raise DecodeError(f"value has {len(values)} fields, a RootModel output 1")
            output = self._validate_output(values[0], strict=False, by_alias=False, by_name=True)
            if not _finite(output.__dict__):
                raise DecodeError("value holds a non-finite float after validation")
            return output
        if len(values) == len(fields):
            data = dict(zip(fields, values))
        elif self._output_extra and len(values) == len(fields) + 1 and type(values[-1]) is dict:
            data = {**values[-1], **dict(zip(fields, values))}
        else:
            raise DecodeError(f"value has {len(values)} fields, the output schema {len(fields)}")
        output = self._validate_output(data, strict=False, by_alias=False, by_name=True)
        # the codec refuses stored NaN/Inf floats, but lax validation turns a stored "nan", "-inf" or
        # "1e400" string into one: such an output could never be sent as JSON (HTTP 500 on every hit)
        if not _finite(output.__dict__) or (self._output_extra and not _finite(output.__pydantic_extra__ or ())):
            raise DecodeError("value holds a non-finite float after validation")
        return output

    def _check_faithful(self, output: BaseModel, stored: bytes) -> None:
        """Raise unless a hit on `stored` returns what this miss returns (==, _identical, same
        model_dump) and pydantic can serialise it for the response: never store what a hit would
        serve differently, or not at all (the codec already refuses NaN and +-Inf)."""
        rebuilt = self._build_output(stored)
        if not (rebuilt == output and _identical(rebuilt, output) and rebuilt.model_dump() == output.model_dump()):
            raise ValueError(f"the output would not come back unchanged from the {self.options.serder} "
                             f"entry ({rebuilt!r} instead of {output!r})")
        output.model_dump_json()

    def _local_put(self, key: bytes, stored: bytes, output: BaseModel | None) -> None:
        """Keep an entry in the local tier: its bytes, and a copy of its output when copies are cheap and
        safe (the caller keeps `output` itself)."""
        self._local.put(key, (stored, fresh_copy(output) if output is not None and self._keep_outputs else None))

    def _local_lookup(self, key: str, build=None) -> Any:
        local = self._local
        entry = local.get(key) if local is not None else None
        return None if entry is None else self._local_hit(entry, build)

    def _local_hit(self, entry: tuple, build=None) -> Any:
        """A local-tier entry (stored bytes, kept output or None) as an output, or as what `build` makes of it."""
        stored, kept = entry
        if build is not None:
            output = build(stored, self._build_output)
        elif kept is not None:
            output = fresh_copy(kept)
        else:
            output = self._build_output(stored)
        self._metrics.local_hits.inc()
        return output

    def _lookup(self, key: str, data: BaseModel | None = None) -> Any:
        """Local tier, then Redis (unless the circuit is open): the output, None (a miss), or a _NoAnswer
        (the model answers; a bypass with its reason, and whether to store)."""
        output = self._local_lookup(key)
        return output if output is not None else self._redis_lookup(key, data)

    def _redis_lookup(self, key: str, data: BaseModel | None = None) -> Any:
        """Redis alone (after a local-tier miss), as `_lookup` answers."""
        breaker = self._breaker
        if not breaker.allow():
            return _CIRCUIT_OPEN
        metrics = self._metrics
        started = _perf_counter()
        try:
            stored = self._backend.get(key)
        except CacheBackendError as error:
            metrics.lookup_seconds.observe(_perf_counter() - started)
            return self._backend_failed(error)
        metrics.lookup_seconds.observe(_perf_counter() - started)
        return self._from_redis(key, stored, data)

    def _from_redis(self, key: str, stored: bytes | None, data: BaseModel | None = None, build=None) -> Any:
        """A Redis reply as an output, or as what `build` makes of it (None: a miss, or an unreadable
        entry, counted). A stale entry is served and, when `data` is known, refreshed in the background
        by one caller."""
        breaker = self._breaker
        if breaker.state != CLOSED or breaker.failures:
            if breaker.record_success():
                self._circuit_closed()
        if stored is None:
            return None
        refresh = False
        try:
            if self._stale:
                stored, fresh_until, cost = unwrap(stored)
                refresh = should_refresh(time.time(), fresh_until, cost, self.options.early_refresh_beta)
            output = self._build_output(stored) if build is None else build(stored, self._build_output)
        except Exception as error:  # noqa: BLE001 - a corrupt entry is a miss; the SET replaces it
            self._count_error("decode", f"entry {key!r} is unreadable ({error}); it will be replaced")
            if self._flight is not None:
                self._flight.forget(key)  # so the miss really recomputes and rewrites it
            return None
        if self._local is not None and not refresh:
            self._local_put(key, stored, output if build is None else None)
        self._metrics.redis_hits.inc()
        if refresh:
            self._metrics.stale_hits.inc()
            if data is not None:
                self._refresh_later(key, data)
        return output

    def _model_predict(self, data: BaseModel) -> BaseModel:
        return self._model.predict(data=data)

    def _predict_and_store(self, key: bytes, data: BaseModel, store: bool = True) -> tuple[BaseModel, bool]:
        """The model's output, and whether it is now in Redis (not tried when `store` is false). With
        shared_single_flight, a lease in Redis makes concurrent misses of other processes wait for this
        one's value (or this one wait for theirs) instead of all calling the model."""
        token = None
        if store and self.options.shared_single_flight and self._breaker.allow():
            token, theirs = self._take_lease(key)
            if theirs is not None:
                return theirs, True
        try:
            started = _perf_counter()
            output = self._model.predict(data=data)
            cost = _perf_counter() - started
            self._metrics.model_seconds.observe(cost)
            return self._store_output(key, output, store, cost)
        finally:
            if token is not None:
                self._give_lease(key, token)

    def _take_lease(self, key: bytes) -> tuple[bytes | None, BaseModel | None]:
        """(our lease token, None), or (None, the value another process computed meanwhile), or
        (None, None): compute without a lease (Redis trouble, the holder failed, or the bound passed)."""
        backend, lease = self._backend, key + _LEASE_SUFFIX
        seconds = self.options.lease_seconds
        token = None
        try:
            token = self._try_lease(key)
            if token is not None:
                # the previous holder may have stored the value and released the lease between our
                # lookup and now: look once more before calling the model
                stored = backend.get(key)
                output = self._decode(stored) if stored is not None else None
                if output is None:
                    return token, None
                self._give_lease(key, token)
                self._metrics.shared.inc()
                return None, output
        except CacheBackendError as error:
            self._backend_failed(error)
            return (token, None) if token is not None else (None, None)  # else the in-process single-flight
        deadline, pause = time.monotonic() + seconds, 0.002
        while time.monotonic() < deadline:
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, 0.05)
            try:
                # the lease first, then the key: the holder stores before it releases, so a lease seen gone
                # before a GET that misses means the holder gave up (the other order could miss a value
                # stored between the two reads, and compute it again)
                leased = backend.exists(lease)
                stored = backend.get(key)
                if stored is not None:
                    output = self._decode(stored)
                    if output is not None:
                        self._metrics.shared.inc()
                        return None, output
                if not leased:
                    return None, None  # the holder gave up (its model failed): compute ourselves
            except CacheBackendError as error:
                self._backend_failed(error)
                return None, None
        return None, None

    def _try_lease(self, key: bytes) -> bytes | None:
        """Our token if the key's lease was free (SET NX PX lease_seconds), else None."""
        token = os.urandom(9).hex().encode()
        milliseconds = max(1, int(self.options.lease_seconds * 1000))
        return token if self._backend.acquire(key + _LEASE_SUFFIX, token, milliseconds) else None

    def _give_lease(self, key: bytes, token: bytes) -> None:
        try:
            self._backend.release(key + _LEASE_SUFFIX, token)
        except CacheBackendError as error:
            self._backend_failed(error)  # it expires by itself after lease_seconds

    def _decode(self, stored: bytes) -> BaseModel | None:
        """A stored value as an output, uncounted (a value another process just stored); None if unreadable."""
        try:
            return self._build_output(unwrap(stored)[0] if self._stale else stored)
        except Exception:  # noqa: BLE001
            return None

    def _refresh_later(self, key: bytes, data: BaseModel) -> None:
        """Refresh a stale entry in the background, once per key in this process (and, with
        shared_single_flight, once across processes: whoever takes the lease)."""
        with self._refresh_lock:
            if key in self._refreshing:
                return
            self._refreshing.add(key)
            if self._refresher is None:
                self.__dict__["_refresher"] = concurrent.futures.ThreadPoolExecutor(
                    max_workers=2, thread_name_prefix="cachedmodel-refresh")
            refresher = self._refresher
        try:
            refresher.submit(self._refresh, key, data)
        except RuntimeError:  # shut down (close() ran): the entry stays stale until it expires
            with self._refresh_lock:
                self._refreshing.discard(key)

    def _refresh(self, key: bytes, data: BaseModel) -> None:
        token = None
        try:
            if self.options.shared_single_flight:
                token = self._try_lease(key)
                if token is None:
                    return  # another process refreshes it
            started = _perf_counter()
            output = self._predict_one(data)
            cost = _perf_counter() - started
            self._metrics.model_seconds.observe(cost)
            if self._store_output(key, output, True, cost)[1]:
                self._metrics.refreshes.inc()
        except CacheBackendError as error:
            self._backend_failed(error)
        except Exception as error:  # noqa: BLE001 - the stale entry stays; a later hit tries again
            self._count_error("other", f"background refresh failed: {error}")
        finally:
            if token is not None:
                self._give_lease(key, token)
            with self._refresh_lock:
                self._refreshing.discard(key)

    def _stored_value(self, encoded: bytes, compute_seconds: float) -> bytes:
        """What goes to Redis: the codec's bytes, behind a freshness header for stale-while-revalidate."""
        if not self._stale:
            return encoded
        return wrap(encoded, time.time() + self.options.ttl_seconds, compute_seconds)

    def _store_output(self, key: bytes, output: BaseModel, store: bool, compute_seconds: float
                      ) -> tuple[BaseModel, bool]:
        if type(output) is not self._output_type:
            self._count_error("encode", f"model returned {type(output).__name__}, not "
                                        f"{self._output_type.__name__}; not cached")
            return output, False
        try:
            stored = self._codec.encode(self._output_values(output))
            self._check_faithful(output, stored)
        except Exception as error:  # noqa: BLE001
            self._count_error("encode", f"cannot cache the output: {error}")
            return output, False
        if self._local is not None:
            self._local_put(key, stored, output)
        if not store or not self._breaker.allow():
            return output, False
        try:
            self._backend.set(key, self._stored_value(stored, compute_seconds), self._store_ttl)
        except CacheBackendError as error:
            self._backend_failed(error, storing=True)
            return output, False
        if self._breaker.record_success():
            self._circuit_closed()
        return output, True

    def _predict_rows(self, data: Any) -> BaseModel:
        """Per-row caching of a batch (see cachedmodel.batch): one MGET, the model once with the rows
        that missed, one pipelined SET; every row counted as one request."""
        view, input_type, output_type = self._rows, self._input_type, self._output_type
        metrics = view._metrics
        try:
            batch = data if type(data) is input_type else input_type.model_validate(data)
        except Exception:  # noqa: BLE001 - not a valid batch: the model answers as it would uncached
            metrics.requests.inc()
            metrics.bypasses["invalid_input"].inc()
            return self._model.predict(data=data)
        rows = batch.root
        if not rows:
            return self._model.predict(data=batch)
        metrics.requests.inc(len(rows))
        try:
            rows = [view._prepare_input(row) for row in rows]
            keys = [view._keys.key(row) for row in rows]
        except Exception as error:  # noqa: BLE001
            view._count_error("encode", f"cannot build a row key: {error}")
            metrics.bypasses["unkeyable"].inc(len(rows))
            return self._model.predict(data=batch)
        if self._key_trace is not None:
            for key in keys:
                self._key_trace(key)
        outputs: list = [None] * len(rows)
        pending = []
        for index, key in enumerate(keys):
            output = view._local_lookup(key)
            if output is None:
                pending.append(index)
            else:
                outputs[index] = output
        compute, store = self._rows_from_redis(view, rows, keys, pending, outputs)
        if compute:
            try:
                self._compute_rows(view, rows, keys, compute, outputs, store)
            except _RowsMismatch:  # rows cannot be stitched: the model's own answer to the whole batch
                return self._model.predict(data=batch)
        return output_type(outputs)

    def _rows_from_redis(self, view, rows, keys, pending, outputs) -> tuple[list, bool]:
        """Fill `outputs` from one MGET; returns (rows the model must answer, whether to store them)."""
        metrics, breaker = view._metrics, view._breaker
        if not pending:
            return [], True
        if not breaker.allow():
            metrics.bypasses["circuit_open"].inc(len(pending))
            return pending, False
        started = _perf_counter()
        try:
            values = view._backend.mget([keys[index] for index in pending])
        except CacheBackendError as error:
            metrics.lookup_seconds.observe(_perf_counter() - started)
            outcome = view._backend_failed(error)
            metrics.bypasses[outcome.reason].inc(len(pending))
            return pending, outcome.store
        metrics.lookup_seconds.observe(_perf_counter() - started)
        missed = []
        for index, value in zip(pending, values):
            output = view._from_redis(keys[index], value, rows[index])
            if output is None:
                missed.append(index)
            else:
                outputs[index] = output
        if missed:
            metrics.misses.inc(len(missed))
        return missed, True

    def _compute_rows(self, view, rows, keys, compute, outputs, store) -> None:
        """The model once for the rows nobody else computes; rows other batches compute are waited for
        after that (leaders never wait: no deadlock); new rows stored in one pipeline."""
        flight, metrics = view._flight, view._metrics
        lead, follow, calls = [], [], {}
        for index in compute:
            if flight is None:
                lead.append(index)
                continue
            call, leader = flight.begin(keys[index])
            calls[index] = call
            (lead if leader else follow).append(index)
        if lead:
            try:
                started = _perf_counter()
                answers = self._rows_model_answers([rows[index] for index in lead])
                cost = (_perf_counter() - started) / len(lead)
            except BaseException as error:
                for index in lead:
                    if flight is not None:
                        flight.finish(keys[index], calls[index], error=error)
                raise
            items = []
            for index, output in zip(lead, answers):
                outputs[index] = output
                try:
                    value = view._codec.encode(view._output_values(output))
                    view._check_faithful(output, value)
                except Exception as error:  # noqa: BLE001
                    view._count_error("encode", f"cannot cache the row output: {error}")
                    continue
                if view._local is not None:
                    view._local_put(keys[index], value, output)
                items.append((keys[index], view._stored_value(value, cost)))
            stored = store and bool(items) and view._breaker.allow() and self._store_rows(view, items)
            for index in lead:
                if flight is not None:
                    flight.finish(keys[index], calls[index], outputs[index], linger=stored)
        retry = []
        for index in follow:
            try:
                output = flight.wait(calls[index])
            except _RowsMismatch:
                retry.append(index)
                continue
            outputs[index] = output.model_copy() if isinstance(output, BaseModel) else output
            metrics.shared.inc()
        if retry:  # the other batch's model answer did not line up with its rows: ask for ours
            for index, output in zip(retry, self._rows_model_answers([rows[index] for index in retry])):
                outputs[index] = output

    def _rows_model_answers(self, rows: list) -> list:
        """The model's outputs for `rows` (one call), which must be one per row, in order."""
        started = _perf_counter()
        result = self._model.predict(data=self._input_type(rows))
        self._rows._metrics.model_seconds.observe(_perf_counter() - started)
        answers = result.root if isinstance(result, self._output_type) else None
        if answers is None or len(answers) != len(rows):
            self._rows._count_error("encode", f"model returned {type(result).__name__} with "
                                              f"{len(answers) if answers is not None else '?'} rows for {len(rows)}")
            raise _RowsMismatch(f"the batch model answered {len(rows)} rows with "
                                f"{len(answers) if answers is not None else 'no'} rows")
        return answers

    def _store_rows(self, view, items: list) -> bool:
        try:
            view._backend.set_many(items, view._store_ttl)
        except CacheBackendError as error:
            view._backend_failed(error, storing=True)
            return False
        if view._breaker.record_success():
            view._circuit_closed()
        return True

    def _count_error(self, kind: str, message: str) -> None:
        metrics = self.__dict__.get("_metrics")
        if metrics is not None:
            metrics.errors.get(kind, metrics.errors["other"]).inc()
            self._events.error(kind, message)
        else:
            logger.warning("cache error (%s) before a model was set: %s", kind, message)

    def _backend_failed(self, error: CacheBackendError, storing: bool = False) -> _NoAnswer:
        """Count a failed Redis call and feed the breaker; for a lookup, what the request is instead."""
        if error.bypass:  # Redis was not asked (every pooled connection busy): counted, not a failure
            if storing:
                self._metrics.store_skips[error.kind].inc()
            return _POOL_EXHAUSTED
        self._count_error(error.kind, f"{self._backend.describe}: {error}")
        if not error.trips_breaker:
            if self._breaker.record_success():  # the server answered (e.g. OOM): it is reachable
                self._circuit_closed()
            return _REDIS_ERROR
        if self._breaker.record_failure():
            self._metrics.circuit_open.set(1)
            logger.warning("cache for %s: circuit open, skipping Redis at %s for %gs after %s errors",
                           self._metrics.model, self._backend.describe, self._breaker.reset_seconds, error.kind)
        return _UNREACHABLE

    def _circuit_closed(self) -> None:
        self._metrics.circuit_open.set(0)
        self._events.recovered()
        logger.warning("cache for %s: Redis at %s reachable again, circuit closed",
                       self._metrics.model, self._backend.describe)
