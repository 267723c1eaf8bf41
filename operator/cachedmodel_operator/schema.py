"""The CachedModel schema, read from the chart's CRD file: defaulting and validation without a cluster.

The API server validates with the CRD's openAPIV3Schema plus its CEL rules; `render` must refuse the same
resources, so this module applies the same schema (jsonschema, OpenAPI 3.0 = draft 4 semantics) and
re-states the CEL rules in Python (`cross_field_errors`). A unit test checks that every CEL rule of the
CRD has a Python twin here. The checks the API server makes of metadata itself (ObjectMeta: name, namespace,
labels, annotations, finalizers) are `metadata_errors`; status is ignored, as on create and update.
"""
from __future__ import annotations

import copy
import functools
import math
import re
from decimal import Decimal
from importlib import resources
from typing import Any, Iterable, Iterator

import jsonschema
import yaml

GROUP = "cachedmodel.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "CachedModel"
PLURAL = "cachedmodels"
CRD_FILE = "cachedmodels.cachedmodel.dev.yaml"

RESERVED_ENV = ("PORT", "REST_CONFIG", "REDIS_URL", "REDIS_PASSWORD", "REDIS_SENTINELS", "REDIS_SENTINEL_SERVICE",
                "REDIS_SENTINEL_PASSWORD", "REDIS_CLUSTER_NODES")
MANAGED_REDIS_FIELDS = ("mode", "sentinel", "cluster", "image", "maxmemory", "maxmemoryPolicy", "persistence",
                        "resources", "nodeSelector", "tolerations", "affinity", "priorityClassName")
# What the operator puts on the model pods itself: spec.model may not set or shadow it.
OWNED_POD_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component",
                    "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by")
OWNED_POD_ANNOTATIONS = ("prometheus.io/scrape", "prometheus.io/port", "prometheus.io/path")
OWNED_ANNOTATION_PREFIX = f"{GROUP}/"
OWNED_VOLUMES = ("config", "tmp")
# Mount paths a user volume may not take: the operator's mounts and their parents (which would shadow them).
OWNED_MOUNT_PATHS = ("/", "/etc", "/etc/cachedmodel", "/tmp")
CONFIG_MOUNT = "/etc/cachedmodel"
VOLUME_SOURCES = ("emptyDir", "configMap", "secret", "persistentVolumeClaim", "csi", "projected")
PROJECTED_SOURCES = ("configMap", "secret", "serviceAccountToken")
REDIS_MODES = ("standalone", "sentinel", "cluster")
CLUSTER_DEFAULTS = {"shards": 3, "replicasPerShard": 1}
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_NAME_LENGTH = 40
# Names that would collide with the children of another CachedModel (<x>-redis is x's Redis Service).
RESERVED_NAME_SUFFIXES = ("-redis", "-redis-headless", "-redis-sentinel")


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
    # metadata is ObjectMeta, validated by the API server itself (here: metadata_errors), not by the CRD schema
    schema["properties"]["metadata"] = {}
    return jsonschema.Draft4Validator(schema)


# -- messages: one line each, naming the field, never echoing more than a short excerpt of the input
_SIMPLE_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]{0,99}$")
_KINDS = {"object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer",
          "number": "a number", "boolean": "a boolean", "null": "null"}


def field_path(parts: Iterable[Any]) -> str:
    """'spec.model.env[0].name' for the parts of a path; odd keys quoted so that they cannot fake a path."""
    text = ""
    for part in parts:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        elif isinstance(part, str) and _SIMPLE_KEY.match(part):
            text += f".{part}" if text else part
        else:
            text += f"[{short(part, 40)}]"
    return text or "<root>"


def short(value: Any, limit: int = 60) -> str:
    """repr of a value cut to `limit` characters, so a 2 MiB string is not echoed back."""
    text = repr(value)
    if len(text) > limit:
        size = f" ({len(value)} characters)" if isinstance(value, str) else ""
        text = text[:limit] + "..." + size
    return text


def kind_of(value: Any) -> str:
    """'a string', 'an integer', ... in JSON's words (a Python dict is a mapping, a bool is not an int)."""
    for kind, types in (("null", type(None)), ("boolean", bool), ("integer", int), ("number", float),
                        ("string", str), ("object", dict), ("array", list)):
        if isinstance(value, types):
            return _KINDS[kind]
    return type(value).__name__


def _message(error: jsonschema.ValidationError) -> str:
    validator, expected, instance = error.validator, error.validator_value, error.instance
    if validator == "type":
        kinds = " or ".join(_KINDS.get(kind, kind) for kind in ([expected] if isinstance(expected, str) else expected))
        got = kind_of(instance)
        return f"must be {kinds}, got {got}" + ("" if isinstance(instance, (dict, list)) else f" {short(instance)}")
    if validator == "enum":
        return f"must be one of {', '.join(map(str, expected))}, got {short(instance)}"
    if validator == "pattern":
        return f"must match {short(expected, 120)}, got {short(instance)}"
    if validator in ("maxLength", "minLength"):
        bound = "most" if validator == "maxLength" else "least"
        return f"must be at {bound} {expected} characters, got {len(instance)}"
    if validator in ("maxItems", "minItems"):
        return f"must have at {'most' if validator == 'maxItems' else 'least'} {expected} items, got {len(instance)}"
    if validator in ("minimum", "maximum"):
        exclusive = error.schema.get("exclusiveMinimum" if validator == "minimum" else "exclusiveMaximum")
        relation = (">" if validator == "minimum" else "<") + ("" if exclusive else "=")
        return f"must be {relation} {expected}, got {short(instance)}"
    if validator == "anyOf":
        return "must be an integer or a string"
    return short(error.message, 200)


def schema_errors(obj: dict) -> list[str]:
    """OpenAPI schema violations as 'field.path: message'."""
    errors = []
    for error in sorted(_validator().iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
        parts = list(error.absolute_path)
        if error.validator == "additionalProperties":
            unknown = sorted(set(error.instance) - set(error.schema.get("properties", {})), key=str)
            errors.extend(f"{field_path(parts + [name])}: field not declared in schema" for name in unknown)
        elif error.validator == "required":
            missing = [name for name in error.validator_value if name not in error.instance]
            errors.extend(f"{field_path(parts + [name])}: Required value" for name in missing)
        else:
            errors.append(f"{field_path(parts)}: {_message(error)}")
    return errors


# -- ObjectMeta, as the API server validates it for a create (apimachinery's ValidateObjectMeta)
DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
TOTAL_ANNOTATION_SIZE = 256 * 1024
STANDARD_FINALIZERS = ("kubernetes", "orphan", "foregroundDeletion")
# ObjectMeta fields and their JSON types; null is "unset" for each (as JSON decoding into Go makes it)
OBJECT_META = {
    "name": str, "generateName": str, "namespace": str, "uid": str, "resourceVersion": str, "selfLink": str,
    "generation": int, "creationTimestamp": str, "deletionTimestamp": str, "deletionGracePeriodSeconds": int,
    "labels": dict, "annotations": dict, "finalizers": list, "ownerReferences": list, "managedFields": list,
}
_TYPE_NAMES = {str: "a string", int: "an integer", bool: "a boolean", dict: "a mapping", list: "a list"}
OWNER_REFERENCE = {"apiVersion": str, "kind": str, "name": str, "uid": str, "controller": bool,
                   "blockOwnerDeletion": bool}


def dns_1123_label_error(value: Any) -> str | None:
    """Why `value` is not a namespace name (a DNS-1123 label), or None."""
    if not isinstance(value, str):
        return f"must be a string, got {kind_of(value)} {short(value)}"
    if not DNS_1123_LABEL.match(value) or len(value) > 63:
        return (f"must be a DNS-1123 label (at most 63 lower case letters, digits and '-', starting and ending "
                f"with a letter or digit), got {short(value)}")
    return None


def qualified_name_error(value: str) -> str | None:
    """Why `value` is not a label/annotation key ([prefix/]name: a DNS subdomain and a 63-character name)."""
    prefix, slash, name = value.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not DNS_1123_SUBDOMAIN.match(prefix)):
        return "prefix part must be a lower case DNS-1123 subdomain of at most 253 characters"
    if "/" in prefix:
        return "must be [prefix/]name with at most one '/'"
    if not name:
        return "name part must be non-empty"
    if len(name) > 63:
        return "name part must be no more than 63 characters"
    if not _QUALIFIED_NAME.match(name):
        return ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                "with an alphanumeric character")
    return None


def _string_map_errors(name: str, value: dict) -> Iterator[tuple[str, str, str]]:
    """(key, value as text, error or '') for each entry of metadata.<name>; null counts as '' like in Go."""
    for key, item in value.items():
        if not isinstance(key, str):
            yield "", "", f"metadata.{name}: Invalid value: {short(key)}: keys must be strings"
        elif item is not None and not isinstance(item, str):
            yield key, "", (f"{field_path(['metadata', name, key])}: must be a string, got {kind_of(item)}"
                            + ("" if isinstance(item, (dict, list)) else f" {short(item)} (quote it)"))
        else:
            yield key, item or "", ""


def metadata_errors(meta: Any) -> list[str]:
    """The API server's checks of metadata: types, name present, namespace, labels, annotations, finalizers."""
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        return [f"metadata: must be a mapping, got {kind_of(meta)}"]
    errors = []
    for key in sorted(set(meta) - set(OBJECT_META), key=str):
        errors.append(f"{field_path(['metadata', key])}: field not declared in schema")
    for key, expected in OBJECT_META.items():
        value = meta.get(key)
        if value is not None and (not isinstance(value, expected) or (expected is int and isinstance(value, bool))):
            errors.append(f"metadata.{key}: must be {_TYPE_NAMES[expected]}, got {kind_of(value)}"
                          + ("" if isinstance(value, (dict, list)) else f" {short(value)}"))
    if errors:
        return errors
    if not meta.get("name"):
        extra = " (render cannot make up a name from generateName)" if meta.get("generateName") else ""
        errors.append(f"metadata.name: Required value{extra}")
    if meta.get("namespace") is not None:
        reason = dns_1123_label_error(meta["namespace"])
        if reason:
            errors.append(f"metadata.namespace: {reason}")
    for key in ("generation", "deletionGracePeriodSeconds"):
        if (meta.get(key) or 0) < 0:
            errors.append(f"metadata.{key}: must be greater than or equal to 0")
    for key, value, error in _string_map_errors("labels", meta.get("labels") or {}):
        reason = qualified_name_error(key) if not error else None
        if error or reason:
            errors.append(error or f"metadata.labels: Invalid value: {short(key)}: {reason}")
        elif len(value) > 63 or not _LABEL_VALUE.match(value):
            errors.append(f"{field_path(['metadata', 'labels', key])}: Invalid value: {short(value)}: a label value "
                          f"must be at most 63 characters: alphanumeric, '-', '_' or '.', starting and ending with an "
                          f"alphanumeric")
    size = 0
    for key, value, error in _string_map_errors("annotations", meta.get("annotations") or {}):
        reason = qualified_name_error(key.lower()) if not error else None
        if error or reason:
            errors.append(error or f"metadata.annotations: Invalid value: {short(key)}: {reason}")
        size += len(key.encode("utf-8", "replace")) + len(value.encode("utf-8", "replace"))
    if size > TOTAL_ANNOTATION_SIZE:
        errors.append(f"metadata.annotations: Too long: must have at most {TOTAL_ANNOTATION_SIZE} bytes, got {size}")
    for index, finalizer in enumerate(meta.get("finalizers") or []):
        if not isinstance(finalizer, str):
            reason = f"must be a string, got {kind_of(finalizer)}"
        elif "/" not in finalizer and finalizer not in STANDARD_FINALIZERS:
            reason = "name is neither a standard finalizer name nor is it fully qualified"
        else:
            reason = qualified_name_error(finalizer)
        if reason:
            errors.append(f"metadata.finalizers[{index}]: Invalid value: {short(finalizer)}: {reason}")
    for index, owner in enumerate(meta.get("ownerReferences") or []):
        if not isinstance(owner, dict):
            errors.append(f"metadata.ownerReferences[{index}]: must be a mapping, got {kind_of(owner)}")
            continue
        for key, expected in OWNER_REFERENCE.items():
            if owner.get(key) is not None and not isinstance(owner[key], expected):
                errors.append(f"metadata.ownerReferences[{index}].{key}: must be {_TYPE_NAMES[expected]}, "
                              f"got {kind_of(owner[key])}")
            elif expected is str and not owner.get(key):
                errors.append(f"metadata.ownerReferences[{index}].{key}: Required value")
    for index, entry in enumerate(meta.get("managedFields") or []):
        if not isinstance(entry, dict):
            errors.append(f"metadata.managedFields[{index}]: must be a mapping, got {kind_of(entry)}")
    return errors


def _mapping(parent: Any, key: str) -> dict:
    """parent[key] if it is a mapping, else {} (a wrong type is reported by the schema, not here)."""
    value = parent.get(key) if isinstance(parent, dict) else None
    return value if isinstance(value, dict) else {}


def cross_field_errors(obj: dict) -> list[str]:
    """The CRD's CEL rules (x-kubernetes-validations), stated in Python for objects already defaulted.

    Each rule checks the types it relies on itself, so that one wrong-typed field never silently skips the
    other rules (the wrong type is reported by schema_errors or metadata_errors).
    """
    errors = []
    name = _mapping(obj, "metadata").get("name")
    if isinstance(name, str) and name:  # missing or not a string: reported by metadata_errors
        if not DNS_1035.match(name) or len(name) > MAX_NAME_LENGTH:
            errors.append(f"metadata.name: must be a DNS-1035 label of at most {MAX_NAME_LENGTH} characters "
                          f"(lower case letters, digits and '-', starting with a letter), got {short(name)}")
        if name.endswith(RESERVED_NAME_SUFFIXES):
            errors.append(f"metadata.name: must not end with {', '.join(RESERVED_NAME_SUFFIXES)}: CachedModel <x> "
                          f"already names its Redis Service <x>-redis, ConfigMap <x>-redis-config, headless "
                          f"Service <x>-redis-headless and Sentinel Service <x>-redis-sentinel, got {short(name)}")
    spec = _mapping(obj, "spec")
    model, cache, redis = _mapping(spec, "model"), _mapping(spec, "cache"), _mapping(spec, "redis")
    env = model.get("env") if isinstance(model.get("env"), list) else []
    env_names = []
    for index, item in enumerate(env):
        if not isinstance(item, dict):
            continue
        env_names.append((index, item.get("name")))
        if isinstance(item.get("name"), str) and item["name"] in RESERVED_ENV:
            errors.append(f"spec.model.env[{index}].name: {item['name']} is set by the operator "
                          f"(reserved: {', '.join(RESERVED_ENV)})")
        if "value" in item and "valueFrom" in item:
            errors.append(f"spec.model.env[{index}]: takes value or valueFrom, not both")
    errors += _duplicates("spec.model.env", env_names)
    errors += _placement_errors("spec.model", model) + _model_pod_errors(model) + _cache_option_errors(cache)
    errors += _placement_errors("spec.redis", redis)
    errors += _duplicates("spec.cache.hashingFields", _indexed(cache.get("hashingFields")))
    reduced = _mapping(cache, "reducedPrecision")
    errors += _duplicates("spec.cache.reducedPrecision.fields", _indexed(reduced.get("fields")))
    if reduced.get("fields") and "numberOfPlaces" not in reduced:
        errors.append("spec.cache.reducedPrecision.numberOfPlaces: Required value when "
                      "spec.cache.reducedPrecision.fields is set")
    if "external" in redis:
        clash = [field for field in MANAGED_REDIS_FIELDS if field in redis]
        if clash:
            errors.append(f"spec.redis.external: cannot be combined with managed Redis fields ({', '.join(clash)}): "
                          f"an external topology is given by external.url, external.sentinels or external.clusterNodes")
    for block in ("sentinel", "cluster"):
        if block in redis and redis.get("mode") != block:
            errors.append(f"spec.redis.{block}: needs spec.redis.mode: {block}")
    errors += _external_errors(_mapping(redis, "external")) if isinstance(redis.get("external"), dict) else []
    policy, ttl = redis.get("maxmemoryPolicy"), cache.get("ttlSeconds")
    ttl_set = isinstance(ttl, int) and not isinstance(ttl, bool) and ttl > 0
    if isinstance(policy, str) and policy.startswith("volatile-") and not ttl_set:
        errors.append("spec.redis.maxmemoryPolicy: volatile-* only evicts keys that expire: "
                      "set spec.cache.ttlSeconds > 0 or use an allkeys-* policy")
    return errors


def _list(parent: dict, key: str) -> list[tuple[int, dict]]:
    """(index, item) of the mappings in parent[key] (other types are schema errors)."""
    value = parent.get(key)
    return [(i, item) for i, item in enumerate(value) if isinstance(item, dict)] if isinstance(value, list) else []


def _key_errors(path: str, mapping: Any, what: str) -> list[str]:
    """Keys of a label/annotation map that are not [prefix/]name keys (the CRD's CEL key rule)."""
    if not isinstance(mapping, dict):
        return []
    return [f"{path}: Invalid value: {short(key)}: keys must be {what} keys ({reason})"
            for key in mapping
            for reason in [qualified_name_error(key) if isinstance(key, str) and len(key) <= 317 else "too long"]
            if reason]


def _placement_errors(path: str, section: dict) -> list[str]:
    """The CEL rules of nodeSelector and tolerations (spec.model and spec.redis)."""
    errors = _key_errors(f"{path}.nodeSelector", section.get("nodeSelector"), "label")
    for index, toleration in _list(section, "tolerations"):
        where = f"{path}.tolerations[{index}]"
        if toleration.get("operator") == "Exists" and toleration.get("value"):
            errors.append(f"{where}: a toleration with operator Exists takes no value")
        if not toleration.get("key") and toleration.get("operator") != "Exists":
            errors.append(f"{where}: a toleration without a key must have operator Exists (it tolerates every taint)")
        if "tolerationSeconds" in toleration and toleration.get("effect") != "NoExecute":
            errors.append(f"{where}: tolerationSeconds goes with effect NoExecute")
    return errors


def _model_pod_errors(model: dict) -> list[str]:
    """The CEL rules of spec.model's pod fields: the operator's labels, annotations, volumes and mounts are
    its own; a volume has one source; a mount names a volume."""
    errors = _autoscaling_errors(model)
    for key, item_key in (("imagePullSecrets", "name"), ("volumes", "name"), ("volumeMounts", "mountPath")):
        errors += _duplicates(f"spec.model.{key}", [(i, item.get(item_key)) for i, item in _list(model, key)])
    for index, constraint in _list(model, "topologySpreadConstraints"):
        if "minDomains" in constraint and constraint.get("whenUnsatisfiable") != "DoNotSchedule":
            errors.append(f"spec.model.topologySpreadConstraints[{index}].minDomains: goes with "
                          f"whenUnsatisfiable DoNotSchedule")
    labels, annotations = model.get("podLabels"), model.get("podAnnotations")
    errors += _key_errors("spec.model.podLabels", labels, "label")
    errors += _key_errors("spec.model.podAnnotations", annotations, "annotation")
    for key in labels if isinstance(labels, dict) else ():
        if key in OWNED_POD_LABELS:
            errors.append(f"{field_path(['spec', 'model', 'podLabels', key])}: is set by the operator (it selects "
                          f"its pods by {', '.join(OWNED_POD_LABELS)})")
    for key in annotations if isinstance(annotations, dict) else ():
        if isinstance(key, str) and (key in OWNED_POD_ANNOTATIONS or key.startswith(OWNED_ANNOTATION_PREFIX)):
            errors.append(f"{field_path(['spec', 'model', 'podAnnotations', key])}: is set by the operator "
                          f"({', '.join(OWNED_POD_ANNOTATIONS)} and every {OWNED_ANNOTATION_PREFIX} key)")
    volumes = _list(model, "volumes")
    for index, volume in volumes:
        where = f"spec.model.volumes[{index}]"
        if volume.get("name") in OWNED_VOLUMES:
            errors.append(f"{where}.name: {volume['name']} is the operator's volume (reserved: "
                          f"{', '.join(OWNED_VOLUMES)})")
        given = [source for source in VOLUME_SOURCES if source in volume]
        if len(given) != 1:
            errors.append(f"{where}: takes exactly one source of {', '.join(VOLUME_SOURCES)}"
                          + (f", got {' and '.join(given)}" if given else ", got none"))
        for number, projected in _list(_mapping(volume, "projected"), "sources"):
            if sum(source in projected for source in PROJECTED_SOURCES) != 1:
                errors.append(f"{where}.projected.sources[{number}]: is exactly one of {', '.join(PROJECTED_SOURCES)}")
    names = {volume.get("name") for _, volume in volumes}
    for index, mount in _list(model, "volumeMounts"):
        where = f"spec.model.volumeMounts[{index}]"
        path = mount.get("mountPath")
        if isinstance(path, str) and (path in OWNED_MOUNT_PATHS or path.startswith(CONFIG_MOUNT + "/")
                                      or path.endswith("/")):
            errors.append(f"{where}.mountPath: must not be {', '.join(OWNED_MOUNT_PATHS)} or inside {CONFIG_MOUNT}, "
                          f"nor end with '/': the operator mounts the service config at {CONFIG_MOUNT} and a "
                          f"scratch /tmp (mount inside /tmp, e.g. /tmp/trace, or elsewhere), got {short(path)}")
        if isinstance(mount.get("name"), str) and mount["name"] not in names:
            errors.append(f"{where}.name: {short(mount['name'])} names no volume of spec.model.volumes")
    return errors


def _autoscaling_errors(model: dict) -> list[str]:
    """The CEL rules of spec.model.autoscaling: a sane range, and the CPU request the HPA divides by."""
    autoscaling = model.get("autoscaling")
    if not isinstance(autoscaling, dict):
        return []
    errors = []
    low, high = _number(autoscaling.get("minReplicas")), _number(autoscaling.get("maxReplicas"))
    if low is not None and high is not None and low > high:
        errors.append(f"spec.model.autoscaling.minReplicas: must be at most maxReplicas ({high}), got {low}")
    if "cpu" not in _mapping(_mapping(model, "resources"), "requests"):
        errors.append("spec.model.autoscaling: needs spec.model.resources.requests.cpu (the HPA scales on CPU use "
                      "as a share of that request)")
    return errors


def _number(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _cache_option_errors(cache: dict) -> list[str]:
    """The CEL rules between spec.cache options (the decorator refuses the same combinations at start)."""
    errors = []
    if "leaseSeconds" in cache and cache.get("sharedSingleFlight") is not True:
        errors.append("spec.cache.leaseSeconds: needs spec.cache.sharedSingleFlight: true")
    stale, ttl, beta = (_number(cache.get(key)) for key in ("staleSeconds", "ttlSeconds", "earlyRefreshBeta"))
    if stale and not (ttl and ttl > 0):
        errors.append("spec.cache.staleSeconds: needs spec.cache.ttlSeconds > 0 (entries are stale once their TTL "
                      "passed)")
    if beta and not (stale and stale > 0):
        errors.append("spec.cache.earlyRefreshBeta: needs spec.cache.staleSeconds > 0 (the early refresh runs while "
                      "the entry is served)")
    return errors


def _external_errors(external: dict) -> list[str]:
    """The CEL rules of spec.redis.external: one topology, and the options that belong to it."""
    errors = []
    given = [key for key in ("url", "sentinels", "clusterNodes") if key in external]
    if len(given) != 1:
        errors.append("spec.redis.external: takes exactly one of url, sentinels or clusterNodes"
                      + (f", got {' and '.join(given)}" if given else ", got none"))
    if ("sentinels" in external) != ("sentinelService" in external):
        errors.append("spec.redis.external.sentinelService: the name of the primary the Sentinels monitor goes with "
                      "external.sentinels: both or neither")
    if "sentinelPasswordSecretRef" in external and "sentinels" not in external:
        errors.append("spec.redis.external.sentinelPasswordSecretRef: needs external.sentinels")
    if "url" in external and ("tls" in external or "username" in external):
        errors.append("spec.redis.external.url: tls and username are for sentinels and clusterNodes: with url, say "
                      "them in the URL (rediss:// for TLS, redis://user@host)")
    for key in ("sentinels", "clusterNodes"):
        errors += _duplicates(f"spec.redis.external.{key}", _indexed(external.get(key)))
    return errors


def redis_topology(spec: Any) -> str:
    """'external', or the managed mode (standalone when unset) of a spec, as the transition rules see it."""
    redis = _mapping(spec, "redis")
    if "external" in redis:
        return "external"
    mode = redis.get("mode")
    return mode if isinstance(mode, str) else "standalone"


def cluster_shape(spec: Any) -> tuple[Any, Any]:
    cluster = _mapping(_mapping(spec, "redis"), "cluster")
    return (cluster.get("shards", CLUSTER_DEFAULTS["shards"]),
            cluster.get("replicasPerShard", CLUSTER_DEFAULTS["replicasPerShard"]))


def transition_errors(old: dict, new: dict) -> list[str]:
    """The CRD's transition rules (CEL with oldSelf: what an update may not change), for two objects.

    Only the API server applies them (render sees one object); this twin documents them in Python and lets
    the unit tests check the same cases as the admission tests against the real kube-apiserver."""
    errors = []
    old_spec, new_spec = _mapping(old, "spec"), _mapping(new, "spec")
    before, after = redis_topology(old_spec), redis_topology(new_spec)
    if "external" not in (before, after) and before != after:
        errors.append(f"spec.redis.mode: cannot change after creation ({before} -> {after}): create a new "
                      f"CachedModel, or switch to spec.redis.external first")
    if before == after == "cluster" and cluster_shape(old_spec) != cluster_shape(new_spec):
        errors.append("spec.redis.cluster: shards and replicasPerShard cannot change after creation "
                      "(the operator does not reshard)")
    return errors


# -- numbers, as the API server receives them: kubectl turns the YAML into JSON with Go, which writes a whole float
# below 1e21 as an integer literal (2.0 -> 2, 1e12 -> 1000000000000, its shortest digits), and the API server
# decodes an integer literal within int64 as an integer (kube-apiserver 1.34 takes replicas: 2.0 and stores 2)
INT64_MIN, INT64_MAX = -2 ** 63, 2 ** 63 - 1  # beyond: a float to the API server, "must be of type integer"


def _integer_typed(node: Any) -> bool:
    """Whether a schema node takes integers: type integer, or int-or-string (quantities, PDB counts ...)."""
    if not isinstance(node, dict):
        return False
    return (node.get("type") == "integer" or bool(node.get("x-kubernetes-int-or-string"))
            or any(isinstance(option, dict) and option.get("type") == "integer" for option in node.get("anyOf") or ()))


def _yaml_spelling(value: float) -> str:
    return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")


def _bound(value: int | float, node: dict) -> str | None:
    """'must be <= 100' when the node's own maximum (or minimum) refuses `value`, else None."""
    maximum, minimum = node.get("maximum"), node.get("minimum")
    if isinstance(maximum, (int, float)) and value > maximum:
        return f"must be <= {maximum}"
    if isinstance(minimum, (int, float)) and value < minimum:
        return f"must be >= {minimum}"
    return None


def normalize_numbers(obj: Any, node: dict | None = None) -> tuple[Any, list[str]]:
    """(copy of `obj`, errors): numbers as the API server takes them, before the schema is applied.

    - NaN and infinity (YAML .nan, .inf, -.inf) are refused in every field, naming it: JSON has neither, so
      kubectl cannot even send them (and NaN would pass any minimum and maximum check);
    - a whole float in an integer field (replicas: 2.0, 1e2) becomes the int kubectl would send: the
      manifests carry 2, not 2.0, and 1e12 is out of range like 1000000000000 (the schema's bound); a whole
      float or an integer outside int64 is out of range too, named with the field's bound when it has one.
    Other fields keep their numbers as written."""
    node = openapi_schema() if node is None else node
    errors: list[str] = []

    def walk(value: Any, node: Any, path: list) -> Any:
        if isinstance(value, bool):
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                errors.append(f"{field_path(path)}: must be a finite number, got {_yaml_spelling(value)} (Kubernetes "
                              f"objects are JSON, which has no NaN or infinity)")
                return value
            if not (_integer_typed(node) and value.is_integer()):
                return value
            whole = int(Decimal(repr(value)))  # the shortest digits, as Go writes them
            if INT64_MIN <= whole <= INT64_MAX:
                return whole
            errors.append(f"{field_path(path)}: " + (_bound(whole, node) or f"out of range: must be between "
                          f"{INT64_MIN} and {INT64_MAX} (int64)") + f", got {value:g}")
            return value
        if isinstance(value, int):
            if _integer_typed(node) and not INT64_MIN <= value <= INT64_MAX and _bound(value, node) is None:
                errors.append(f"{field_path(path)}: out of range: must be between {INT64_MIN} and {INT64_MAX} "
                              f"(int64), got {short(value)}")
            return value
        if isinstance(value, dict):
            properties = node.get("properties") or {} if isinstance(node, dict) else {}
            extra = node.get("additionalProperties") if isinstance(node, dict) else None
            return {key: walk(item, properties[key] if key in properties else extra, path + [key])
                    for key, item in value.items()}
        if isinstance(value, list):
            items = node.get("items") if isinstance(node, dict) else None
            return [walk(item, items, path + [index]) for index, item in enumerate(value)]
        return value

    return walk(obj, node, []), errors


def _indexed(values: Any) -> list[tuple[int, Any]]:
    return list(enumerate(values)) if isinstance(values, list) else []


def _duplicates(path: str, values: list[tuple[int, Any]]) -> list[str]:
    """x-kubernetes-list-type set/map: a value (a string; other types are schema errors) given twice."""
    seen, errors = set(), []
    for index, value in values:
        if not isinstance(value, str):
            continue
        if value in seen:
            errors.append(f"{path}[{index}]: Duplicate value: {short(value)}")
        seen.add(value)
    return errors


def validate(obj: dict) -> dict:
    """Default and validate a CachedModel like the API server; returns the defaulted copy or raises.

    `status` is dropped first, as the API server drops it on create and update (it is written only through
    the status subresource), so a file saved with `kubectl get -o yaml` renders like the object itself.
    """
    if not isinstance(obj, dict):
        raise InvalidCachedModel([f"<root>: must be a mapping (a CachedModel), got {kind_of(obj)}"])
    errors = []
    if obj.get("apiVersion") != API_VERSION:
        errors.append(f"apiVersion: must be {API_VERSION}, got {short(obj.get('apiVersion'))}")
    if obj.get("kind") != KIND:
        errors.append(f"kind: must be {KIND}, got {short(obj.get('kind'))}")
    if errors:  # another kind of object: the rest of this schema does not apply to it
        raise InvalidCachedModel(errors)
    obj = {key: value for key, value in obj.items() if key != "status"}
    obj, number_errors = normalize_numbers(obj)
    refused = tuple(error.split(": ", 1)[0] + ": " for error in number_errors)  # said once, not again as a type
    errors += number_errors + [error for error in metadata_errors(obj.get("metadata")) if not error.startswith(refused)]
    defaulted = apply_defaults(obj)
    errors += [error for error in schema_errors(defaulted) if not error.startswith(refused)]
    errors += cross_field_errors(defaulted)
    if errors:
        raise InvalidCachedModel(errors)
    return defaulted
