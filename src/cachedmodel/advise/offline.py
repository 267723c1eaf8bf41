"""Key request bodies offline with the real decorator configuration, and measure stored value sizes.

The rest-model-service configuration is loaded as the service loads it (cachedmodel.service.config);
the model and the decorators listed up to and including the RedisCachingDecorator are built in the
service's order (the first listed is innermost). No Redis is contacted: `cache_key()` gives each
body's key (hashing fields, reduced precision ... as configured), and the value size is measured by
running the model on a sample of distinct inputs and encoding each output with the decorator's codec,
exactly the bytes it would SET.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from cachedmodel.advise.traces import Trace, TraceBuilder, TraceError


def _load_type(class_path: str):
    from rest_model_service.helpers import load_type
    try:
        return load_type(class_path)
    except (ImportError, AttributeError, ValueError) as error:
        raise TraceError(f"cannot import {class_path!r}: {error}") from None


def build_decorator(config_path: str | Path, model_name: str | None = None):
    """The configured RedisCachingDecorator, wrapping its model (and the decorators inside it)."""
    try:
        from cachedmodel.service.config import ConfigurationFileError, load_configuration
    except ImportError as error:
        raise TraceError(f"--config needs the service extra (pip install 'cachedmodel[service]'): {error}") from None
    from cachedmodel.decorator import RedisCachingDecorator
    from cachedmodel.options import ConfigurationError

    try:
        configuration = load_configuration(config_path)
    except ConfigurationFileError as error:
        raise TraceError(str(error)) from None
    found = []
    for entry in configuration.models:
        caching = [d for d in entry.decorators or [] if issubclass(_load_type(d.class_path), RedisCachingDecorator)]
        if caching:
            found.append(entry)
    if not found:
        raise TraceError(f"{config_path}: no model with a cachedmodel.RedisCachingDecorator among its decorators")
    for entry in found:
        model_class = _load_type(entry.class_path)
        try:
            model = model_class(**(entry.configuration or {}))
        except Exception as error:  # noqa: BLE001 - the model's own error, named
            raise TraceError(f"{config_path}: model {entry.class_path} failed to load: {error}") from None
        if model_name is not None and model.qualified_name != model_name:
            continue
        current = model
        for decorator_entry in entry.decorators or []:
            decorator_class = _load_type(decorator_entry.class_path)
            try:
                decorator = decorator_class(**(decorator_entry.configuration or {}))
                current = decorator.set_model(current)
            except ConfigurationError as error:
                raise TraceError(f"{config_path}: decorator of model {model.qualified_name}: {error}") from None
            if isinstance(decorator, RedisCachingDecorator):
                return decorator
    names = ", ".join(entry.class_path for entry in found)
    raise TraceError(f"{config_path}: no cached model named {model_name!r} (cached models: {names})")


def _problem(error: Exception) -> str:
    errors = getattr(error, "errors", None)
    if callable(errors):
        try:
            return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in errors())
        except Exception:  # noqa: BLE001
            pass
    return str(error)


def read_requests(path: str | Path, decorator, sample: int = 100) -> Trace:
    """A JSON-lines file of request bodies -> a trace keyed by `decorator.cache_key()`; the value size
    and the model latency measured on up to `sample` distinct inputs."""
    path = Path(path)
    input_type = decorator.input_schema
    known = set(input_type.model_fields)
    check_unknown = input_type.model_config.get("extra") != "allow"
    builder = TraceBuilder()
    samples: list = []
    try:
        lines = open(path, "rb")
    except OSError as error:
        raise TraceError(f"cannot read {path}: {error.strerror or error}") from None
    with lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                body = json.loads(line)
            except (ValueError, UnicodeDecodeError) as error:
                raise TraceError(f"{path}:{number}: not a JSON value ({error}); one JSON object per line") from None
            if not isinstance(body, dict):
                raise TraceError(f"{path}:{number}: a request body is a JSON object, got {type(body).__name__}")
            if check_unknown:
                unknown = sorted(set(body) - known)
                if unknown:
                    raise TraceError(f"{path}:{number}: unknown field(s) {', '.join(unknown)} "
                                     f"(input fields: {', '.join(sorted(known))})")
            try:
                data = input_type.model_validate(body)
                key = decorator.cache_key(data).encode()
            except Exception as error:  # noqa: BLE001 - validation or keying: named by line
                raise TraceError(f"{path}:{number}: not a valid input: {_problem(error)}") from None
            before = builder.distinct_count
            builder.add(key)
            if builder.distinct_count > before and len(samples) < sample:
                samples.append(data)
    trace = builder.build(f"requests from {path.name}, keyed with the decorator configuration")
    trace.value_bytes, trace.model_latency_seconds = measure_values(decorator, samples)
    trace.notes.append(f"value size and model latency measured on {len(samples)} distinct inputs")
    return trace


def measure_values(decorator, inputs: list) -> tuple[int, float]:
    """(mean stored value size in bytes, median model seconds per prediction) over `inputs`."""
    model = decorator.__dict__["_model"]  # the wrapped model (the decorators inside the cache included)
    codec = decorator.__dict__["_codec"]
    sizes, seconds = [], []
    for data in inputs:
        prepared = decorator._prepare_input(data)  # reduced precision applied, as before predicting
        started = time.perf_counter()
        output = model.predict(data=prepared)
        seconds.append(time.perf_counter() - started)
        sizes.append(len(codec.encode(decorator._output_values(output))))
    return round(statistics.fmean(sizes)), statistics.median(seconds)
