"""The CRD schema as `render` applies it: defaults, field-level errors, and the CEL rules' Python twins."""
import copy

import pytest
import yaml

from cachedmodel_operator import schema
from operator_samples import BASE


def with_spec(**sections) -> dict:
    out = copy.deepcopy(BASE)
    for section, value in sections.items():
        if section == "model":
            out["spec"]["model"].update(value)
        elif section == "metadata":
            out["metadata"].update(value)
        else:
            out["spec"][section] = value
    return out


def test_crd_basics():
    crd = schema.crd()
    assert crd["spec"]["group"] == "cachedmodel.dev"
    assert crd["spec"]["scope"] == "Namespaced"
    assert crd["spec"]["names"]["kind"] == "CachedModel"
    assert "cmodel" in crd["spec"]["names"]["shortNames"]
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}, "scale": {
        "specReplicasPath": ".spec.model.replicas", "statusReplicasPath": ".status.replicas.current",
        "labelSelectorPath": ".status.selector"}}
    columns = {c["name"] for c in version["additionalPrinterColumns"]}
    assert {"Ready", "Replicas", "Maxmemory", "Policy", "Age"} <= columns


def test_package_crd_is_the_chart_file():
    from pathlib import Path
    chart = Path(__file__).resolve().parents[3] / "charts/cachedmodel-operator/crds/cachedmodels.cachedmodel.dev.yaml"
    assert yaml.safe_load(chart.read_text()) == schema.crd()


def test_maxmemory_policies_are_the_eight_redis_policies():
    redis = schema.openapi_schema()["properties"]["spec"]["properties"]["redis"]["properties"]
    assert set(redis["maxmemoryPolicy"]["enum"]) == {
        "noeviction", "allkeys-lru", "allkeys-lfu", "allkeys-random",
        "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl"}


def test_defaults_fill_cache_section():
    out = schema.validate(copy.deepcopy(BASE))
    assert out["spec"]["cache"] == {"enabled": True, "prefix": "", "hashingFields": [], "serder": "MessagePack",
                                    "compression": False, "reducedPrecision": {"fields": []}, "ttlSeconds": 0,
                                    "epoch": 0}
    assert out["spec"]["model"]["port"] == 8000
    assert "redis" not in out["spec"], "managed Redis defaults are the operator's, not the schema's"


def test_defaults_do_not_override_given_values():
    out = schema.validate(with_spec(cache={"serder": "JSON", "ttlSeconds": 5}))
    assert out["spec"]["cache"]["serder"] == "JSON" and out["spec"]["cache"]["ttlSeconds"] == 5


@pytest.mark.parametrize("memory", ["256mb", "1GB", "100m", "1024", "512k", "64Kb", "10b"])
def test_maxmemory_units_accepted(memory):
    schema.validate(with_spec(redis={"maxmemory": memory}))


# (spec change, field path the error must name)
BAD = [
    ({"cache": {"serder": "Pickle"}}, "spec.cache.serder"),
    ({"redis": {"maxmemoryPolicy": "lru"}}, "spec.redis.maxmemoryPolicy"),
    ({"redis": {"maxmemory": "256 MB"}}, "spec.redis.maxmemory"),
    ({"redis": {"maxmemory": "0"}}, "spec.redis.maxmemory"),
    ({"redis": {"maxmemory": "1tb"}}, "spec.redis.maxmemory"),
    ({"redis": {"maxmemory": "99999999999gb"}}, "spec.redis.maxmemory"),
    ({"cache": {"prefix": "${HOME}"}}, "spec.cache.prefix"),
    ({"model": {"replicas": -1}}, "spec.model.replicas"),
    ({"model": {"port": 70000}}, "spec.model.port"),
    ({"model": {"port": 80}}, "spec.model.port"),
    ({"model": {"classPath": "not a path"}}, "spec.model.classPath"),
    ({"model": {"resources": {"limits": {"memory": "lots"}}}}, "spec.model.resources.limits.memory"),
    ({"redis": {"persistence": {"enabled": True, "size": "big"}}}, "spec.redis.persistence.size"),
    ({"redis": {"external": {"url": "http://cache:6379"}}}, "spec.redis.external.url"),
    ({"redis": {"external": {"url": "redis://cache:99999/0"}}}, "spec.redis.external.url"),
    ({"redis": {"external": {"url": "unix://redis.sock"}}}, "spec.redis.external.url"),
    ({"redis": {"external": {"url": "redis://c:6379"}, "maxmemory": "1gb"}}, "spec.redis.external"),
    ({"redis": {"external": {"url": "redis://c:6379", "passwordSecretRef": {"name": "s"}}}},
     "spec.redis.external.passwordSecretRef.key"),
    ({"cache": {"reducedPrecision": {"fields": ["bmi"]}}}, "spec.cache.reducedPrecision.numberOfPlaces"),
    ({"cache": {"reducedPrecision": {"fields": ["bmi"], "numberOfPlaces": 16}}},
     "spec.cache.reducedPrecision.numberOfPlaces"),
    ({"cache": {"hashingFields": ["age", "age"]}}, "spec.cache.hashingFields[1]"),
    ({"cache": {"hashingFields": ["not-a-field"]}}, "spec.cache.hashingFields[0]"),
    ({"cache": {"ttlSeconds": -1}}, "spec.cache.ttlSeconds"),
    ({"cache": {"socketTimeoutSeconds": 0}}, "spec.cache.socketTimeoutSeconds"),
    ({"cache": {"localCache": {"size": 10, "ttlSeconds": 0}}}, "spec.cache.localCache.ttlSeconds"),
    ({"cache": {"serdr": "JSON"}}, "spec.cache.serdr"),
    ({"redis": {"maxmemoryPolicy": "volatile-lru"}}, "spec.redis.maxmemoryPolicy"),
    ({"model": {"env": [{"name": "REDIS_URL", "value": "redis://elsewhere"}]}}, "spec.model.env[0].name"),
    ({"model": {"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}}, "spec.model.env[1]"),
    ({"redis": {"mode": "replicated"}}, "spec.redis.mode"),
    ({"redis": {"sentinel": {"replicas": 2}}}, "spec.redis.sentinel"),
    ({"redis": {"mode": "sentinel", "sentinel": {"replicas": 0}}}, "spec.redis.sentinel.replicas"),
    ({"redis": {"mode": "sentinel", "sentinel": {"replicas": 9}}}, "spec.redis.sentinel.replicas"),
    ({"redis": {"mode": "cluster", "cluster": {"shards": 2}}}, "spec.redis.cluster.shards"),
    ({"redis": {"mode": "cluster", "cluster": {"replicasPerShard": 0}}}, "spec.redis.cluster.replicasPerShard"),
    ({"redis": {"mode": "standalone", "cluster": {"shards": 3}}}, "spec.redis.cluster"),
    ({"redis": {"mode": "cluster", "sentinel": {"replicas": 2}}}, "spec.redis.sentinel"),
    ({"redis": {"mode": "sentinel", "external": {"url": "redis://c:6379"}}}, "spec.redis.external"),
    ({"redis": {"external": {}}}, "spec.redis.external"),
    ({"redis": {"external": {"url": "redis://c:6379", "sentinels": ["s:26379"], "sentinelService": "m"}}},
     "spec.redis.external"),
    ({"redis": {"external": {"sentinels": ["s:26379"]}}}, "spec.redis.external.sentinelService"),
    ({"redis": {"external": {"clusterNodes": ["c:6379"], "sentinelService": "m"}}},
     "spec.redis.external.sentinelService"),
    ({"redis": {"external": {"sentinels": ["s"], "sentinelService": "m"}}}, "spec.redis.external.sentinels[0]"),
    ({"redis": {"external": {"sentinels": ["s:0"], "sentinelService": "m"}}}, "spec.redis.external.sentinels[0]"),
    ({"redis": {"external": {"sentinels": ["a b:26379"], "sentinelService": "m"}}},
     "spec.redis.external.sentinels[0]"),
    ({"redis": {"external": {"sentinels": ["s:26379", "s:26379"], "sentinelService": "m"}}},
     "spec.redis.external.sentinels[1]"),
    ({"redis": {"external": {"sentinels": [], "sentinelService": "m"}}}, "spec.redis.external.sentinels"),
    ({"redis": {"external": {"sentinels": ["s:26379"], "sentinelService": "my master"}}},
     "spec.redis.external.sentinelService"),
    ({"redis": {"external": {"clusterNodes": ["c:6379", "c:99999"]}}}, "spec.redis.external.clusterNodes[1]"),
    ({"redis": {"external": {"clusterNodes": ["c:6379"], "sentinelPasswordSecretRef": {"name": "s", "key": "k"}}}},
     "spec.redis.external.sentinelPasswordSecretRef"),
    ({"redis": {"external": {"url": "redis://c:6379", "tls": True}}}, "spec.redis.external.url"),
    ({"redis": {"external": {"url": "redis://c:6379", "username": "u"}}}, "spec.redis.external.url"),
    ({"redis": {"external": {"clusterNodes": ["c:6379"], "username": "${USER}"}}}, "spec.redis.external.username"),
    ({"model": {"env": [{"name": "REDIS_SENTINELS", "value": "s:26379"}]}}, "spec.model.env[0].name"),
    ({"model": {"env": [{"name": "REDIS_CLUSTER_NODES", "value": "c:6379"}]}}, "spec.model.env[0].name"),
    ({"metadata": {"name": "shop-redis-sentinel"}}, "metadata.name"),
    ({"metadata": {"name": "Insurance_Charges"}}, "metadata.name"),
    ({"metadata": {"name": "a" * 41}}, "metadata.name"),
    # pod fields (issue 19): each refused naming the field
    ({"model": {"imagePullSecrets": [{"name": "Not_A_Name"}]}}, "spec.model.imagePullSecrets[0].name"),
    ({"model": {"imagePullSecrets": [{}]}}, "spec.model.imagePullSecrets[0].name"),
    ({"model": {"serviceAccountName": "UPPER"}}, "spec.model.serviceAccountName"),
    ({"model": {"priorityClassName": ""}}, "spec.model.priorityClassName"),
    ({"model": {"nodeSelector": {"disk": "a b"}}}, "spec.model.nodeSelector.disk"),
    ({"model": {"nodeSelector": {"disk": 1}}}, "spec.model.nodeSelector.disk"),
    ({"model": {"tolerations": [{"key": "k", "operator": "Sometimes"}]}}, "spec.model.tolerations[0].operator"),
    ({"model": {"tolerations": [{"key": "k", "effect": "Evict"}]}}, "spec.model.tolerations[0].effect"),
    ({"model": {"tolerations": [{"operator": "Equal"}]}}, "spec.model.tolerations[0]"),
    ({"model": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}}}},
     "spec.model.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"),
    ({"model": {"affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 101, "podAffinityTerm": {"topologyKey": "zone"}}]}}}},
     "spec.model.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight"),
    ({"model": {"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchExpressions": [{"key": "a", "operator": "Gt"}]}, "topologyKey": "z"}]}}}},
     "spec.model.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].labelSelector."
     "matchExpressions[0].operator"),
    ({"model": {"affinity": {"nodeAffinitty": {}}}}, "spec.model.affinity.nodeAffinitty"),
    ({"model": {"topologySpreadConstraints": [{"maxSkew": 0, "topologyKey": "z",
                                               "whenUnsatisfiable": "DoNotSchedule"}]}},
     "spec.model.topologySpreadConstraints[0].maxSkew"),
    ({"model": {"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "z"}]}},
     "spec.model.topologySpreadConstraints[0].whenUnsatisfiable"),
    ({"model": {"podLabels": {"app.kubernetes.io/name": "x"}}}, "spec.model.podLabels.app.kubernetes.io/name"),
    ({"model": {"podLabels": {"team": "a" * 64}}}, "spec.model.podLabels.team"),
    ({"model": {"podAnnotations": {"cachedmodel.dev/config-checksum": "x"}}},
     "spec.model.podAnnotations.cachedmodel.dev/config-checksum"),
    ({"model": {"podAnnotations": {"prometheus.io/scrape": "false"}}}, "spec.model.podAnnotations.prometheus.io/scrape"),
    ({"model": {"volumes": [{"name": "config", "configMap": {"name": "c"}}]}}, "spec.model.volumes[0].name"),
    ({"model": {"volumes": [{"name": "data"}]}}, "spec.model.volumes[0]"),
    ({"model": {"volumes": [{"name": "data", "hostPath": {"path": "/"}}]}}, "spec.model.volumes[0].hostPath"),
    ({"model": {"volumes": [{"name": "Data", "emptyDir": {}}]}}, "spec.model.volumes[0].name"),
    ({"model": {"volumes": [{"name": "d", "emptyDir": {"sizeLimit": "lots"}}]}},
     "spec.model.volumes[0].emptyDir.sizeLimit"),
    ({"model": {"volumes": [{"name": "d", "emptyDir": {}}, {"name": "d", "emptyDir": {}}]}}, "spec.model.volumes[1]"),
    ({"model": {"volumes": [{"name": "d", "secret": {"secretName": "s", "defaultMode": 512}}]}},
     "spec.model.volumes[0].secret.defaultMode"),
    ({"model": {"volumes": [{"name": "d", "secret": {"secretName": "s", "items": [{"key": "k", "path": "a/../.."}]}}]}},
     "spec.model.volumes[0].secret.items[0].path"),
    ({"model": {"volumes": [{"name": "d", "configMap": {"name": "c", "items": [{"key": "k", "path": "/abs"}]}}]}},
     "spec.model.volumes[0].configMap.items[0].path"),
    ({"model": {"volumes": [{"name": "d", "projected": {"sources": [{"serviceAccountToken": {"path": ".."}}]}}]}},
     "spec.model.volumes[0].projected.sources[0].serviceAccountToken.path"),
    ({"model": {"volumes": [{"name": "d", "emptyDir": {}}],
                "volumeMounts": [{"name": "d", "mountPath": "/data", "subPath": "../up"}]}},
     "spec.model.volumeMounts[0].subPath"),
    ({"model": {"volumes": [{"name": "d", "emptyDir": {}}], "volumeMounts": [{"name": "d", "mountPath": "/tmp"}]}},
     "spec.model.volumeMounts[0].mountPath"),
    ({"model": {"volumes": [{"name": "d", "emptyDir": {}}],
                "volumeMounts": [{"name": "d", "mountPath": "/etc/cachedmodel/x"}]}},
     "spec.model.volumeMounts[0].mountPath"),
    ({"model": {"volumes": [{"name": "d", "emptyDir": {}}], "volumeMounts": [{"name": "d", "mountPath": "rel"}]}},
     "spec.model.volumeMounts[0].mountPath"),
    ({"model": {"volumeMounts": [{"name": "nothing", "mountPath": "/data"}]}}, "spec.model.volumeMounts[0].name"),
    ({"model": {"startupTimeoutSeconds": 5}}, "spec.model.startupTimeoutSeconds"),
    ({"model": {"startupTimeoutSeconds": 3601}}, "spec.model.startupTimeoutSeconds"),
    ({"redis": {"external": {"url": "redis://c:6379"}, "nodeSelector": {"a": "b"}}}, "spec.redis.external"),
    ({"redis": {"priorityClassName": "Bad Name"}}, "spec.redis.priorityClassName"),
    ({"redis": {"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]}}, "spec.redis.tolerations[0]"),
    # autoscaling (issue 21)
    ({"model": {"autoscaling": {"maxReplicas": 3}}}, "spec.model.autoscaling"),
    ({"model": {"autoscaling": {"minReplicas": 3, "maxReplicas": 2}, "resources": {"requests": {"cpu": "1"}}}},
     "spec.model.autoscaling.minReplicas"),
    ({"model": {"autoscaling": {"minReplicas": 2}, "resources": {"requests": {"cpu": "1"}}}},
     "spec.model.autoscaling.maxReplicas"),
    ({"model": {"autoscaling": {"maxReplicas": 101}, "resources": {"requests": {"cpu": "1"}}}},
     "spec.model.autoscaling.maxReplicas"),
    ({"model": {"autoscaling": {"maxReplicas": 3, "targetCPUUtilizationPercentage": 0},
                "resources": {"requests": {"cpu": "1"}}}}, "spec.model.autoscaling.targetCPUUtilizationPercentage"),
    ({"model": {"autoscaling": {"maxReplicas": 3, "behavior": {"scaleDown": {"selectPolicy": "Sometimes"}}},
                "resources": {"requests": {"cpu": "1"}}}}, "spec.model.autoscaling.behavior.scaleDown.selectPolicy"),
    # cache options (issue 19)
    ({"cache": {"leaseSeconds": 5}}, "spec.cache.leaseSeconds"),
    ({"cache": {"sharedSingleFlight": True, "leaseSeconds": 0}}, "spec.cache.leaseSeconds"),
    ({"cache": {"staleSeconds": 10}}, "spec.cache.staleSeconds"),
    ({"cache": {"ttlSeconds": 60, "staleSeconds": -1}}, "spec.cache.staleSeconds"),
    ({"cache": {"ttlSeconds": 60, "staleSeconds": 5, "earlyRefreshBeta": -1}}, "spec.cache.earlyRefreshBeta"),
    ({"cache": {"ttlSeconds": 60, "earlyRefreshBeta": 1}}, "spec.cache.earlyRefreshBeta"),
    ({"cache": {"maxConnections": 0}}, "spec.cache.maxConnections"),
    ({"cache": {"poolTimeoutSeconds": 0}}, "spec.cache.poolTimeoutSeconds"),
    ({"cache": {"redisInfoIntervalSeconds": -1}}, "spec.cache.redisInfoIntervalSeconds"),
    ({"cache": {"circuitBreaker": {"failures": 0}}}, "spec.cache.circuitBreaker.failures"),
    ({"cache": {"circuitBreaker": {"resetSeconds": 0}}}, "spec.cache.circuitBreaker.resetSeconds"),
    ({"cache": {"singleFlight": "yes"}}, "spec.cache.singleFlight"),
    ({"cache": {"epoch": -1}}, "spec.cache.epoch"),
    ({"cache": {"epoch": 1.5}}, "spec.cache.epoch"),
]


@pytest.mark.parametrize("change,field", BAD, ids=[f"{f}-{i}" for i, (_, f) in enumerate(BAD)])
def test_bad_input_names_the_field(change, field):
    with pytest.raises(schema.InvalidCachedModel) as caught:
        schema.validate(with_spec(**change))
    assert any(error.startswith(field + ":") for error in caught.value.errors), caught.value.errors


def test_missing_required_fields():
    obj = copy.deepcopy(BASE)
    del obj["spec"]["model"]["image"]
    with pytest.raises(schema.InvalidCachedModel) as caught:
        schema.validate(obj)
    assert "spec.model.image: Required value" in caught.value.errors


def test_wrong_kind_is_refused():
    obj = copy.deepcopy(BASE)
    obj["kind"] = "Deployment"
    with pytest.raises(schema.InvalidCachedModel, match="kind: must be CachedModel"):
        schema.validate(obj)


def test_volatile_policy_allowed_with_ttl():
    schema.validate(with_spec(redis={"maxmemoryPolicy": "volatile-ttl"}, cache={"ttlSeconds": 60}))


def test_every_cel_rule_has_a_python_twin():
    """Each CEL rule of the CRD is listed here with an input that only it refuses; render must refuse it too."""
    twins = [
        (".", {"metadata": {"name": "9lives"}}),
        (".", {"metadata": {"name": "shop-redis"}}),
        (".spec", {"redis": {"maxmemoryPolicy": "volatile-random"}}),
        (".spec.model.env", {"model": {"env": [{"name": "PORT", "value": "1"}]}}),
        (".spec.model.env[]", {"model": {"env": [{"name": "X", "value": "1", "valueFrom": {"fieldRef": {}}}]}}),
        (".spec.cache.reducedPrecision", {"cache": {"reducedPrecision": {"fields": ["bmi"]}}}),
        (".spec.redis", {"redis": {"external": {"url": "redis://c"}, "persistence": {"enabled": False}}}),
        (".spec.redis", {"redis": {"sentinel": {"replicas": 1}}}),
        (".spec.redis", {"redis": {"mode": "sentinel", "cluster": {"shards": 3}}}),
        (".spec.redis.external", {"redis": {"external": {"url": "redis://c", "clusterNodes": ["c:6379"]}}}),
        (".spec.redis.external", {"redis": {"external": {"sentinels": ["s:26379"]}}}),
        (".spec.redis.external", {"redis": {"external": {"clusterNodes": ["c:6379"], "sentinelPasswordSecretRef":
                                                         {"name": "s", "key": "k"}}}}),
        (".spec.redis.external", {"redis": {"external": {"url": "redis://c", "tls": True}}}),
        (".spec.model", {"model": {"volumeMounts": [{"name": "gone", "mountPath": "/data"}]}}),
        (".spec.model", {"model": {"autoscaling": {"maxReplicas": 4}}}),
        (".spec.model.autoscaling", {"model": {"autoscaling": {"minReplicas": 5, "maxReplicas": 4},
                                               "resources": {"requests": {"cpu": "100m"}}}}),
        (".spec.model.nodeSelector", {"model": {"nodeSelector": {"bad key!": "x"}}}),
        (".spec.model.tolerations[]", {"model": {"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]}}),
        (".spec.model.tolerations[]", {"model": {"tolerations": [{"operator": "Equal", "value": "v"}]}}),
        (".spec.model.tolerations[]", {"model": {"tolerations": [{"key": "k", "tolerationSeconds": 5}]}}),
        (".spec.model.topologySpreadConstraints[]", {"model": {"topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway", "minDomains": 2}]}}),
        (".spec.model.podLabels", {"model": {"podLabels": {"-bad": "x"}}}),
        (".spec.model.podLabels", {"model": {"podLabels": {"app.kubernetes.io/instance": "other"}}}),
        (".spec.model.podAnnotations", {"model": {"podAnnotations": {"a/b/c": "x"}}}),
        (".spec.model.podAnnotations", {"model": {"podAnnotations": {"prometheus.io/port": "1"}}}),
        (".spec.model.volumes", {"model": {"volumes": [{"name": "tmp", "emptyDir": {}}]}}),
        (".spec.model.volumes[]", {"model": {"volumes": [{"name": "v", "emptyDir": {}, "secret": {}}]}}),
        (".spec.model.volumes[].projected.sources[]", {"model": {"volumes": [
            {"name": "v", "projected": {"sources": [{}]}}]}}),
        (".spec.model.volumeMounts[]", {"model": {"volumes": [{"name": "v", "emptyDir": {}}],
                                                  "volumeMounts": [{"name": "v", "mountPath": "/etc"}]}}),
        (".spec.cache", {"cache": {"leaseSeconds": 3}}),
        (".spec.cache", {"cache": {"staleSeconds": 30}}),
        (".spec.cache", {"cache": {"ttlSeconds": 60, "earlyRefreshBeta": 1.0}}),
        (".spec.redis.nodeSelector", {"redis": {"nodeSelector": {"a/b/c": "x"}}}),
        (".spec.redis.tolerations[]", {"redis": {"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]}}),
        (".spec.redis.tolerations[]", {"redis": {"tolerations": [{"value": "v"}]}}),
        (".spec.redis.tolerations[]", {"redis": {"tolerations": [{"key": "k", "effect": "NoSchedule",
                                                                   "tolerationSeconds": 5}]}}),
    ]
    # transition rules (oldSelf): only the API server applies them; their twin is schema.transition_errors
    transitions = [
        (".spec", {"redis": {"mode": "standalone"}}, {"redis": {"mode": "sentinel"}}),
        (".spec", {"redis": {"mode": "cluster"}}, {"redis": {"mode": "cluster", "cluster": {"shards": 4}}}),
    ]
    rules = schema.cel_rules()
    assert sorted(path for path, rule in rules if "oldSelf" not in rule["rule"]) == sorted(path for path, _ in twins)
    assert sorted(path for path, rule in rules if "oldSelf" in rule["rule"]) == sorted(p for p, _, _ in transitions)
    for path, change in twins:
        with pytest.raises(schema.InvalidCachedModel):
            schema.validate(with_spec(**change))
    for path, old, new in transitions:
        assert schema.transition_errors(with_spec(**old), with_spec(**new))


@pytest.mark.parametrize("name", ["shop-redis", "shop-redis-headless"])
def test_names_of_another_cachedmodels_redis_children_are_refused(name):
    """CachedModel `shop` owns Service/ConfigMap `shop-redis`, `shop-redis-config`, `shop-redis-headless`: a
    CachedModel named `shop-redis` would silently take them over (same field manager), both reporting Ready."""
    with pytest.raises(schema.InvalidCachedModel) as caught:
        schema.validate(with_spec(metadata={"name": name}))
    assert any(error.startswith("metadata.name: must not end with") for error in caught.value.errors)


def test_children_of_two_allowed_names_never_collide():
    from cachedmodel_operator.builders import render_all
    from cachedmodel_operator.resource import CachedModel

    names = ["shop", "shop-config", "shop-redis-auth", "shop-redis-config", "shop-r", "redis", "shop-headless"]
    seen: dict[tuple[str, str], str] = {}
    for name in names:
        body = schema.validate(with_spec(metadata={"name": name, "namespace": "ns"}))
        for child in render_all(CachedModel.from_body(body), password="x"):
            key = (child["kind"], child["metadata"]["name"])
            assert key not in seen, f"{key} made by CachedModels {seen[key]!r} and {name!r}"
            seen[key] = name


# URLs the decorator (cachedmodel.options.validate_url) refuses at start-up, which would crash-loop the
# model pods if admission let them through, and URLs it takes, which admission must not refuse.
EXTERNAL_URLS = [
    "redis://cache:6379", "redis://cache", "redis://cache:6379/0", "rediss://user:pw@cache.example.com:6380/3",
    "redis://[::1]:6379/0", "unix:///run/redis/redis.sock", "unix:///run/redis.sock?db=2",
    "redis://cache:6379/0?socket_timeout=1", "redis://cache:65535/15",
    "redis://:6379", "redis://cache:port", "redis://cache:99999", "redis://cache/zero", "unix://redis.sock",
    "redis://", "http://cache:6379",
]


@pytest.mark.parametrize("url", EXTERNAL_URLS)
def test_external_url_admission_agrees_with_the_decorator(url):
    from cachedmodel.options import ConfigurationError, validate_url

    try:
        validate_url(url)
        decorator_accepts = True
    except ConfigurationError:
        decorator_accepts = False
    try:
        schema.validate(with_spec(redis={"external": {"url": url}}))
        schema_accepts = True
    except schema.InvalidCachedModel:
        schema_accepts = False
    assert schema_accepts == decorator_accepts, f"{url}: CRD accepts={schema_accepts}, decorator={decorator_accepts}"


def test_a_wrong_typed_name_does_not_skip_the_other_rules():
    """A name that is not a string used to raise inside the CEL twins, which skipped all of them: accepted."""
    obj = with_spec(metadata={"name": 123}, redis={"maxmemoryPolicy": "volatile-lru"},
                    model={"env": [{"name": "PORT", "value": "1"}]})
    with pytest.raises(schema.InvalidCachedModel) as caught:
        schema.validate(obj)
    fields = {error.split(":")[0] for error in caught.value.errors}
    assert {"metadata.name", "spec.redis.maxmemoryPolicy", "spec.model.env[0].name"} <= fields, caught.value.errors


def test_an_unhashable_list_item_does_not_skip_the_duplicate_rules():
    obj = with_spec(cache={"hashingFields": [["age"], "bmi", "bmi"]})
    with pytest.raises(schema.InvalidCachedModel) as caught:
        schema.validate(obj)
    assert "spec.cache.hashingFields[2]: Duplicate value: 'bmi'" in caught.value.errors
    assert any(error.startswith("spec.cache.hashingFields[0]: must be a string") for error in caught.value.errors)


@pytest.mark.parametrize("metadata,field", [
    ({"name": "ic", "namespace": "Prod"}, "metadata.namespace"),
    ({"name": "ic", "labels": {"app": 1}}, "metadata.labels.app"),
    ({"name": "ic", "labels": {"a/b/c": "x"}}, "metadata.labels"),
    ({"name": "ic", "annotations": {"note": False}}, "metadata.annotations.note"),
    ({"name": "ic", "finalizers": ["keep"]}, "metadata.finalizers[0]"),
    ({"name": "ic", "ownerReferences": [{"kind": "X"}]}, "metadata.ownerReferences[0].apiVersion"),
    ({"name": "ic", "generation": -1}, "metadata.generation"),
    ({"name": "ic", "nmae": "x"}, "metadata.nmae"),
])
def test_metadata_is_validated_like_the_api_server(metadata, field):
    obj = copy.deepcopy(BASE)
    obj["metadata"] = metadata
    with pytest.raises(schema.InvalidCachedModel) as caught:
        schema.validate(obj)
    assert any(error.startswith(field + ":") for error in caught.value.errors), caught.value.errors


def test_status_is_ignored_like_the_api_server_ignores_it():
    """Create and update drop status (it is written through the status subresource), so a file saved with
    `kubectl get -o yaml` validates; its timestamps (or any shape) there must not refuse it."""
    obj = copy.deepcopy(BASE)
    obj["status"] = {"conditions": "whatever", "observedGeneration": "x"}
    assert "status" not in schema.validate(obj)


def test_messages_do_not_echo_huge_values():
    with pytest.raises(schema.InvalidCachedModel) as caught:
        schema.validate(with_spec(model={"image": "x" * 100_000, "classPath": "y " * 50_000}))
    assert all(len(error) < 400 for error in caught.value.errors), [len(e) for e in caught.value.errors]


@pytest.mark.parametrize("redis", [
    {"mode": "standalone"}, {"mode": "sentinel"}, {"mode": "sentinel", "sentinel": {"replicas": 1}},
    {"mode": "cluster"}, {"mode": "cluster", "cluster": {"shards": 5, "replicasPerShard": 2}},
    {"external": {"sentinels": ["s-0.s:26379", "[::1]:26379"], "sentinelService": "mymaster",
                  "sentinelPasswordSecretRef": {"name": "s", "key": "k"}, "tls": True, "username": "u"}},
    {"external": {"clusterNodes": ["c-0.c.ns.svc:6379"], "passwordSecretRef": {"name": "s", "key": "k"}}},
], ids=lambda r: "-".join(map(str, r.get("external", r))))
def test_topologies_are_accepted(redis):
    out = schema.validate(with_spec(redis=redis))
    assert out["spec"]["redis"].get("cluster", {}).get("shards", 3) >= 3


# (old redis, new redis, refused?)
TRANSITIONS = [
    ({}, {"mode": "standalone"}, False),
    ({}, {"mode": "sentinel"}, True),
    ({"mode": "sentinel"}, {"mode": "cluster"}, True),
    ({"mode": "cluster"}, {}, True),
    ({"mode": "sentinel"}, {"mode": "sentinel", "sentinel": {"replicas": 4}}, False),  # scaling replicas is fine
    ({"mode": "cluster"}, {"mode": "cluster", "cluster": {"shards": 3, "replicasPerShard": 1}}, False),
    ({"mode": "cluster"}, {"mode": "cluster", "cluster": {"shards": 4}}, True),
    ({"mode": "cluster", "cluster": {"replicasPerShard": 2}}, {"mode": "cluster"}, True),
    ({"mode": "cluster"}, {"mode": "cluster", "maxmemory": "1gb"}, False),
    ({"mode": "sentinel"}, {"external": {"url": "redis://c:6379"}}, False),  # through external: allowed
    ({"external": {"url": "redis://c:6379"}}, {"mode": "cluster"}, False),
]


@pytest.mark.parametrize("old,new,refused", TRANSITIONS)
def test_transition_rules(old, new, refused):
    errors = schema.transition_errors(with_spec(redis=old), with_spec(redis=new))
    assert bool(errors) == refused, errors
    assert all(error.startswith(("spec.redis.mode:", "spec.redis.cluster:")) for error in errors)
