"""The CachedModel schema, read from the chart's CRD file: defaulting and validation without a cluster.

The API server validates with the CRD's openAPIV3Schema plus its CEL rules; `render` must refuse the same
resources, so this module applies the same schema (jsonschema, OpenAPI 3.0 = draft 4 semantics) and
re-states the CEL rules in Python (`cross_field_errors`). A unit test checks that every CEL rule of the
CRD has a Python twin here.
"""
from __future__ import annotations

import copy
import functools
import re
from importlib import resources
from typing import Any, Iterator

import jsonschema
import yaml

GROUP = "cachedmodel.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "CachedModel"
PLURAL = "cachedmodels"
CRD_FILE = "cachedmodels.cachedmodel.dev.yaml"

RESERVED_ENV = ("PORT", "REST_CONFIG", "REDIS_URL", "REDIS_PASSWORD")
MANAGED_REDIS_FIELDS = ("image", "maxmemory", "maxmemoryPolicy", "persistence", "resources")
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_NAME_LENGTH = 40
# Names that would collide with the children of another CachedModel (<x>-redis is x's Redis Service).
RESERVED_NAME_SUFFIXES = ("-redis", "-redis-headless")


class InvalidCachedModel(ValueError):
    """A CachedModel that the API server would refuse; `errors` are 'field.path: message' strings."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("invalid CachedModel:\n" + "\n".join(f"  {error}" for error in errors))


@functools.cache
def crd() -> dict:
    """The CRD document shipped with the package (a link to charts/cachedmodel-operator/crds/)."""
    text = resources.files("cachedmodel_operator").joinpath("data", CRD_FILE).read_text()
    return yaml.safe_load(text)


def openapi_schema() -> dict:
    """The openAPIV3Schema of the served version."""
    (version,) = [v for v in crd()["spec"]["versions"] if v["name"] == VERSION]
    return version["schema"]["openAPIV3Schema"]


def cel_rules() -> list[tuple[str, dict]]:
    """(schema path, rule) for every x-kubernetes-validations entry of the schema."""
    found: list[tuple[str, dict]] = []

    def walk(node: dict, path: str) -> None:
        for rule in node.get("x-kubernetes-validations", []):
            found.append((path or ".", rule))
        for name, child in (node.get("properties") or {}).items():
            walk(child, f"{path}.{name}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]")

    walk(openapi_schema(), "")
    return found


def apply_defaults(obj: Any, schema: dict | None = None) -> Any:
    """Fill in schema defaults like the API server does (recursively, parents first); returns a copy."""
    schema = openapi_schema() if schema is None else schema
    obj = copy.deepcopy(obj)
    _default_into(obj, schema)
    return obj


def _default_into(obj: Any, schema: dict) -> None:
    if isinstance(obj, dict):
        for name, child in (schema.get("properties") or {}).items():
            if name not in obj and "default" in child:
                obj[name] = copy.deepcopy(child["default"])
            if name in obj:
                _default_into(obj[name], child)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name in set(obj) - set(schema.get("properties") or {}):
                _default_into(obj[name], extra)
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for item in obj:
            _default_into(item, schema["items"])


def _strict(schema: Any) -> Any:
    """Copy of the schema that refuses unknown fields (kubectl's --validate=strict does)."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _strict(value) for key, value in schema.items()}
    if ("properties" in schema and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


@functools.cache
def _validator() -> jsonschema.Draft4Validator:
    schema = _strict(openapi_schema())
    # metadata is validated by the API server itself, not by the CRD schema
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft4Validator(schema)


def _path(parts: Iterator[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def schema_errors(obj: dict) -> list[str]:
    """OpenAPI schema violations as 'field.path: message'."""
    errors = []
    for error in sorted(_validator().iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
        path = _path(error.absolute_path) or "<root>"
        if error.validator == "additionalProperties":
            unknown = sorted(set(error.instance) - set(error.schema.get("properties", {})))
            errors.extend(f"{path}.{name}: field not declared in schema" for name in unknown)
        elif error.validator == "required":
            missing = re.findall(r"'([^']+)' is a required property", error.message)
            errors.extend(f"{path}.{name}: Required value" for name in missing)
        elif error.validator == "anyOf":
            errors.append(f"{path}: must be an integer or a string")
        else:
            errors.append(f"{path}: {error.message}")
    return errors


def cross_field_errors(obj: dict) -> list[str]:
    """The CRD's CEL rules (x-kubernetes-validations), stated in Python for objects already defaulted."""
    errors = []
    name = (obj.get("metadata") or {}).get("name", "")
    if not DNS_1035.match(name or "") or len(name) > MAX_NAME_LENGTH:
        errors.append(f"metadata.name: must be a DNS-1035 label of at most {MAX_NAME_LENGTH} characters, got {name!r}")
    if isinstance(name, str) and name.endswith(RESERVED_NAME_SUFFIXES):
        errors.append(f"metadata.name: must not end with {' or '.join(RESERVED_NAME_SUFFIXES)}: CachedModel <x> "
                      f"already names its Redis Service <x>-redis, ConfigMap <x>-redis-config and headless Service "
                      f"<x>-redis-headless, got {name!r}")
    spec = obj.get("spec") or {}
    model, cache, redis = spec.get("model") or {}, spec.get("cache") or {}, spec.get("redis") or {}
    env = model.get("env") or []
    for index, item in enumerate(env):
        if item.get("name") in RESERVED_ENV:
            errors.append(f"spec.model.env[{index}].name: {item['name']} is set by the operator "
                          f"(reserved: {', '.join(RESERVED_ENV)})")
        if "value" in item and "valueFrom" in item:
            errors.append(f"spec.model.env[{index}]: takes value or valueFrom, not both")
    errors += _duplicates("spec.model.env", [item.get("name") for item in env])
    errors += _duplicates("spec.cache.hashingFields", cache.get("hashingFields") or [])
    reduced = cache.get("reducedPrecision") or {}
    errors += _duplicates("spec.cache.reducedPrecision.fields", reduced.get("fields") or [])
    if reduced.get("fields") and "numberOfPlaces" not in reduced:
        errors.append("spec.cache.reducedPrecision.numberOfPlaces: Required value when "
                      "spec.cache.reducedPrecision.fields is set")
    if "external" in redis:
        clash = [field for field in MANAGED_REDIS_FIELDS if field in redis]
        if clash:
            errors.append(f"spec.redis.external: cannot be combined with managed Redis fields ({', '.join(clash)})")
    policy = redis.get("maxmemoryPolicy", "")
    if isinstance(policy, str) and policy.startswith("volatile-") and not (cache.get("ttlSeconds") or 0) > 0:
        errors.append("spec.redis.maxmemoryPolicy: volatile-* only evicts keys that expire: "
                      "set spec.cache.ttlSeconds > 0 or use an allkeys-* policy")
    return errors


def _duplicates(path: str, values: list) -> list[str]:
    seen, errors = set(), []
    for index, value in enumerate(values):
        if value in seen:
            errors.append(f"{path}[{index}]: Duplicate value: {value!r}")
        seen.add(value)
    return errors


def validate(obj: dict) -> dict:
    """Default and validate a CachedModel like the API server; returns the defaulted copy or raises."""
    if not isinstance(obj, dict):
        raise InvalidCachedModel([f"<root>: expected a mapping, got {type(obj).__name__}"])
    errors = []
    if obj.get("apiVersion") != API_VERSION:
        errors.append(f"apiVersion: must be {API_VERSION}, got {obj.get('apiVersion')!r}")
    if obj.get("kind") != KIND:
        errors.append(f"kind: must be {KIND}, got {obj.get('kind')!r}")
    defaulted = apply_defaults(obj)
    errors += schema_errors(defaulted)
    try:
        errors += cross_field_errors(defaulted)
    except (TypeError, AttributeError, KeyError):  # wrong shapes are already reported by the schema
        pass
    if errors:
        raise InvalidCachedModel(errors)
    return defaulted
