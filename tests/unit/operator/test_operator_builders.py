"""Every builder: Kubernetes-schema-valid output, labels and owner references, and the content contracts."""
import copy
import importlib

import kubernetes_validate
import pytest
import yaml

from cachedmodel_operator import builders
from cachedmodel_operator.builders.service_config import CONFIG_PATH, DECORATOR_CLASS_PATH
from cachedmodel_operator.resource import AUTH_UID, CONFIG_CHECKSUM
from operator_samples import BASE, VARIANTS, cached_model, variant  # noqa: F401

K8S_VERSION = "1.34"


def by_kind(objs):
    out = {}
    for obj in objs:
        out.setdefault(obj["kind"], []).append(obj)
    return out


def test_every_child_is_valid_kubernetes(variant):
    for obj in builders.render_all(variant, password="pw"):
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_every_child_is_owned_and_labelled(variant):
    for obj in builders.render_all(variant, password="pw"):
        meta = obj["metadata"]
        assert meta["namespace"] == "ml"
        assert meta["ownerReferences"] == [{"apiVersion": "cachedmodel.dev/v1alpha1", "kind": "CachedModel",
                                            "name": "insurance-charges", "uid": "0d2c8a4e-uid",
                                            "controller": True, "blockOwnerDeletion": True}]
        labels = meta["labels"]
        assert labels["app.kubernetes.io/instance"] == "insurance-charges"
        assert labels["app.kubernetes.io/managed-by"] == "cachedmodel-operator"
        assert labels["app.kubernetes.io/part-of"] == "cachedmodel"
        assert labels["app.kubernetes.io/name"] in ("model-service", "redis")
        assert labels["app.kubernetes.io/component"] in ("model", "cache", "sentinel")


def test_child_names_are_unique_per_kind(variant):
    names = [(o["kind"], o["metadata"]["name"]) for o in builders.render_all(variant, password="pw")]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("name,kinds", [
    ("managed", {"Secret": 1, "ConfigMap": 2, "Service": 3, "StatefulSet": 1, "NetworkPolicy": 1,
                 "PodDisruptionBudget": 1, "Deployment": 1}),
    ("external", {"ConfigMap": 1, "Service": 1, "Deployment": 1}),
    ("disabled", {"ConfigMap": 1, "Service": 1, "Deployment": 1}),
    # sentinel: data + Sentinel StatefulSets, their headless Services and PDBs; no client Service
    ("sentinel", {"Secret": 1, "ConfigMap": 2, "Service": 3, "StatefulSet": 2, "NetworkPolicy": 1,
                  "PodDisruptionBudget": 2, "Deployment": 1}),
    ("cluster", {"Secret": 1, "ConfigMap": 2, "Service": 2, "StatefulSet": 1, "NetworkPolicy": 1,
                 "PodDisruptionBudget": 1, "Deployment": 1}),
    ("external-sentinel", {"ConfigMap": 1, "Service": 1, "Deployment": 1}),
    ("external-cluster", {"ConfigMap": 1, "Service": 1, "Deployment": 1}),
])
def test_children_per_redis_mode(name, kinds):
    objs = by_kind(builders.render_all(cached_model(**VARIANTS[name]), password="pw"))
    assert {kind: len(v) for kind, v in objs.items()} == kinds


def test_desired_children_never_include_the_secret(variant):
    assert "Secret" not in by_kind(builders.desired_children(variant))


# ---- service config
def test_service_config_enables_the_decorator_with_env_placeholders():
    config = builders.service_config(cached_model())
    (model,) = config["models"]
    assert model["class_path"] == "insurance_charges_model.model.InsuranceChargesModel"
    assert model["create_endpoint"] is True
    (decorator,) = model["decorators"]
    assert decorator["class_path"] == DECORATOR_CLASS_PATH
    assert decorator["configuration"] == {"url": "${REDIS_URL}", "password": "${REDIS_PASSWORD:-}",
                                          "serder": "MessagePack", "use_compression": False}


def test_service_config_maps_every_cache_option():
    options = builders.decorator_configuration(cached_model(**VARIANTS["all-options"]))
    assert options == {
        "url": "${REDIS_URL}", "password": "${REDIS_PASSWORD:-}", "prefix": "v1",
        "hashing_fields": ["age", "bmi"], "serder": "JSON", "use_compression": True,
        "reduced_precision_fields": ["bmi"], "number_of_places": 1, "ttl_seconds": 600,
        "socket_timeout": 0.5, "socket_connect_timeout": 0.2, "local_cache_size": 1000,
        "local_cache_ttl_seconds": 5,
    }


def test_service_config_maps_every_new_cache_option():
    options = builders.decorator_configuration(cached_model(**VARIANTS["every-cache-option"]))
    assert {key: value for key, value in options.items() if key not in ("url", "password", "serder",
                                                                        "use_compression")} == {
        "ttl_seconds": 600, "single_flight": False, "shared_single_flight": True, "lease_seconds": 2.5,
        "stale_seconds": 30, "early_refresh_beta": 1.5, "max_connections": 20, "pool_timeout": 0.5,
        "redis_info_interval_seconds": 0, "circuit_breaker_failures": 5, "circuit_breaker_reset_seconds": 2,
        "epoch": 3,
    }


def test_epoch_zero_leaves_the_config_as_it_was():
    """epoch 0 (the default) writes no option: configs (and so pods) of existing CachedModels do not roll."""
    assert "epoch" not in builders.decorator_configuration(cached_model(cache={"epoch": 0}))
    before = builders.service_config_map(cached_model())
    bumped = builders.service_config_map(cached_model(cache={"epoch": 1}))
    assert builders.config_checksum(before["data"]) != builders.config_checksum(bumped["data"])


def test_every_decorator_option_is_mapped_or_deliberately_not_exposed():
    """A new CacheOptions field fails here until it is reachable from a CachedModel or listed with a reason."""
    from cachedmodel.options import CacheOptions
    from cachedmodel_operator import schema
    service_config = importlib.import_module("cachedmodel_operator.builders.service_config")

    mapped = set(service_config.CACHE_OPTIONS.values())
    derived, hidden = set(service_config.DERIVED_OPTIONS), set(service_config.NOT_EXPOSED)
    assert not (mapped & derived or mapped & hidden or derived & hidden), "an option is listed twice"
    assert set(CacheOptions.model_fields) == mapped | derived | hidden
    cache_schema = schema.openapi_schema()["properties"]["spec"]["properties"]["cache"]
    for path in service_config.CACHE_OPTIONS:
        node = cache_schema
        for name in path:
            node = node["properties"][name]
        assert "description" in node, f"spec.cache.{'.'.join(path)} has no description"


def test_pod_fields_reach_the_model_deployment():
    cm = cached_model(**VARIANTS["pod-fields"])
    dep = deployment(cm)
    pod, template = dep["spec"]["template"]["spec"], dep["spec"]["template"]["metadata"]
    model = VARIANTS["pod-fields"]["model"]
    for name in ("imagePullSecrets", "serviceAccountName", "priorityClassName", "nodeSelector", "tolerations",
                 "affinity"):
        assert pod[name] == model[name], name
    (spread,) = pod["topologySpreadConstraints"]
    assert spread["labelSelector"] == {"matchLabels": dep["spec"]["selector"]["matchLabels"]}, \
        "a constraint without labelSelector spreads this CachedModel's model pods"
    assert template["labels"]["team"] == "pricing" and template["labels"]["app.kubernetes.io/version"] == "1.2"
    assert template["labels"]["app.kubernetes.io/instance"] == "insurance-charges"
    assert template["annotations"]["example.com/owner"] == "pricing team"
    assert template["annotations"]["prometheus.io/scrape"] == "true"
    assert [v["name"] for v in pod["volumes"]] == ["config", "tmp", "trace", "weights", "creds", "token"]
    container = container_of(dep)
    assert [m["mountPath"] for m in container["volumeMounts"]] == ["/etc/cachedmodel", "/tmp", "/trace", "/models",
                                                                   "/var/run/creds", "/tmp/token"]
    assert container["startupProbe"]["periodSeconds"] * container["startupProbe"]["failureThreshold"] == 600
    assert pod["automountServiceAccountToken"] is False, "the model pods still get no API token by default"
    assert pod["securityContext"]["runAsUser"] == 10001


def test_pod_fields_are_not_shared_with_the_spec():
    """The builders copy: a manifest edited later (e.g. by a server-side default) never changes the spec."""
    cm = cached_model(**VARIANTS["pod-fields"])
    pod = deployment(cm)["spec"]["template"]["spec"]
    pod["tolerations"].append({"operator": "Exists"})
    pod["volumes"][-1]["name"] = "changed"
    assert len(cm.model["tolerations"]) == 2 and cm.model["volumes"][-1]["name"] == "token"


def test_startup_timeout_defaults_to_two_minutes():
    probe = container_of(deployment(cached_model()))["startupProbe"]
    assert (probe["periodSeconds"], probe["failureThreshold"]) == (2, 60)
    probe = container_of(deployment(cached_model(model={"startupTimeoutSeconds": 15})))["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= 15


def test_redis_placement_reaches_data_pods_and_sentinels():
    cm = cached_model(**VARIANTS["pod-fields"])
    redis = VARIANTS["pod-fields"]["redis"]
    sets = [obj for obj in builders.desired_children(cm) if obj["kind"] == "StatefulSet"]
    assert len(sets) == 2, "sentinel mode: the data pods and the Sentinels"
    for statefulset in sets:
        pod = statefulset["spec"]["template"]["spec"]
        for name in ("nodeSelector", "tolerations", "affinity", "priorityClassName"):
            assert pod[name] == redis[name], (statefulset["metadata"]["name"], name)
    model_pod = deployment(cm)["spec"]["template"]["spec"]
    assert model_pod["nodeSelector"] == {"pool": "cpu", "kubernetes.io/os": "linux"}


def test_autoscaling_makes_an_hpa_that_targets_the_cachedmodel():
    cm = cached_model(model={"autoscaling": {"minReplicas": 2, "maxReplicas": 6, "targetCPUUtilizationPercentage": 60,
                                             "behavior": {"scaleDown": {"stabilizationWindowSeconds": 30}}},
                             "resources": {"requests": {"cpu": "250m"}}})
    (hpa,) = [c for c in builders.desired_children(cm) if c["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2" and hpa["metadata"]["name"] == "insurance-charges"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "cachedmodel.dev/v1alpha1", "kind": "CachedModel",
                                             "name": "insurance-charges"}, "the HPA moves spec.model.replicas"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 60}
    assert hpa["spec"]["behavior"] == {"scaleDown": {"stabilizationWindowSeconds": 30}}
    assert not [c for c in builders.desired_children(cached_model()) if c["kind"] == "HorizontalPodAutoscaler"]


def test_the_selector_in_status_selects_exactly_the_model_pods():
    from cachedmodel_operator.builders.autoscaling import selector_text

    cm = cached_model()
    labels = deployment(cm)["spec"]["template"]["metadata"]["labels"]
    pairs = dict(item.split("=") for item in selector_text(cm).split(","))
    assert pairs == deployment(cm)["spec"]["selector"]["matchLabels"]
    assert all(labels[key] == value for key, value in pairs.items())


def test_cache_disabled_means_no_decorator():
    (model,) = builders.service_config(cached_model(cache={"enabled": False}))["models"]
    assert "decorators" not in model


def test_config_map_holds_the_yaml():
    cm = cached_model()
    data = builders.service_config_map(cm)["data"]
    assert yaml.safe_load(data["rest_config.yaml"]) == builders.service_config(cm)


def test_checksum_is_stable_and_changes_with_config():
    a = builders.service_config_map(cached_model())["data"]
    b = builders.service_config_map(cached_model(cache={"ttlSeconds": 60}))["data"]
    assert builders.config_checksum(a) == builders.config_checksum(dict(reversed(list(a.items()))))
    assert builders.config_checksum(a) != builders.config_checksum(b)


# ---- model Deployment / Service
def deployment(cm, checksum="c0ffee", auth_uid=None):
    return builders.model_deployment(cm, checksum, auth_uid)


def container_of(obj):
    (container,) = obj["spec"]["template"]["spec"]["containers"]
    return container


def env_of(obj):
    return {e["name"]: e for e in container_of(obj)["env"]}


def test_model_deployment_contract():
    cm = cached_model()
    dep = deployment(cm, auth_uid="secret-uid")
    spec = dep["spec"]
    assert dep["metadata"]["name"] == "insurance-charges" and spec["replicas"] == 2
    template = spec["template"]
    assert template["metadata"]["annotations"] == {
        CONFIG_CHECKSUM: "c0ffee", AUTH_UID: "secret-uid",
        # the prometheus.io convention: where the model service's /metrics is
        "prometheus.io/scrape": "true", "prometheus.io/port": "8000", "prometheus.io/path": "/metrics"}
    for key, value in spec["selector"]["matchLabels"].items():
        assert template["metadata"]["labels"][key] == value
    pod = template["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    container = container_of(dep)
    assert "command" not in container and "args" not in container
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"]["path"] == "/api/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/api/health/ready"
    assert container["startupProbe"]["httpGet"]["path"] == "/api/health/startup"
    # a deleted pod serves on while its endpoint goes away, then drains: the grace period covers both
    assert container["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}
    assert pod["terminationGracePeriodSeconds"] >= 5 + 10 + 5
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts == {"/etc/cachedmodel": "config", "/tmp": "tmp"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "insurance-charges-config"
    assert "emptyDir" in volumes["tmp"]
    env = env_of(dep)
    assert env["PORT"]["value"] == "8000"
    assert env["REST_CONFIG"]["value"] == CONFIG_PATH == "/etc/cachedmodel/rest_config.yaml"
    assert env["REDIS_URL"]["value"] == "redis://insurance-charges-redis.ml.svc:6379/0"
    assert env["REDIS_PASSWORD"]["valueFrom"] == {"secretKeyRef": {"name": "insurance-charges-redis-auth",
                                                                   "key": "password"}}


def test_model_deployment_user_settings():
    cm = cached_model(**VARIANTS["all-options"])
    container = container_of(deployment(cm))
    assert container["resources"] == {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": 1073741824}}
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["env"][-1] == {"name": "LOG_LEVEL", "value": "debug"}
    assert env_of(deployment(cm))["PORT"]["value"] == "9000"


def test_external_redis_is_wired_into_env():
    env = env_of(deployment(cached_model(**VARIANTS["external"])))
    assert env["REDIS_URL"]["value"] == "rediss://cache.example:6380/2"
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "cache", "key": "pw"}
    env = env_of(deployment(cached_model(**VARIANTS["external-no-password"])))
    assert "REDIS_PASSWORD" not in env


def test_cache_disabled_has_no_redis_env():
    env = env_of(deployment(cached_model(cache={"enabled": False})))
    assert "REDIS_URL" not in env and "REDIS_PASSWORD" not in env


def test_model_service_targets_the_pods():
    cm = cached_model(model={"port": 9000})
    svc = builders.model_service(cm)
    assert svc["spec"]["ports"] == [{"name": "http", "port": 9000, "targetPort": "http", "protocol": "TCP"}]
    pod_labels = deployment(cm)["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels[k] == v for k, v in svc["spec"]["selector"].items())
    assert cm.url == "http://insurance-charges.ml.svc:9000"


# ---- Redis
def test_redis_conf_memory_policy_and_no_persistence():
    conf = builders.redis_conf(cached_model())
    lines = conf.splitlines()
    assert "maxmemory 256mb" in lines and "maxmemory-policy allkeys-lru" in lines
    assert 'save ""' in lines and "appendonly no" in lines
    assert "requirepass" not in conf, "the password never goes into a ConfigMap"


def test_redis_conf_with_persistence():
    conf = builders.redis_conf(cached_model(**VARIANTS["managed-persistent"]))
    assert "maxmemory 1gb" in conf.splitlines() and "maxmemory-policy allkeys-lfu" in conf.splitlines()
    assert "appendonly yes" in conf.splitlines()


def test_redis_statefulset():
    cm = cached_model()
    sts = builders.redis_statefulset(cm, "abc", "uid-1")
    spec = sts["spec"]
    assert spec["serviceName"] == "insurance-charges-redis-headless" and spec["replicas"] == 1
    assert spec["template"]["metadata"]["annotations"] == {CONFIG_CHECKSUM: "abc", AUTH_UID: "uid-1"}
    container = container_of(sts)
    assert container["image"] == "redis:7.2"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    script = container["command"][-1]
    assert container["command"][:2] == ["sh", "-c"] and "args" not in container
    assert 'requirepass "%s"' in script and '"$REDIS_PASSWORD"' in script, "password from env, not from args"
    assert "> /tmp/redis.conf" in script and script.endswith("exec redis-server /tmp/redis.conf")
    assert container["env"][0]["valueFrom"]["secretKeyRef"]["name"] == "insurance-charges-redis-auth"
    assert "volumeClaimTemplates" not in spec


def test_redis_statefulset_with_persistence():
    sts = builders.redis_statefulset(cached_model(**VARIANTS["managed-persistent"]), "abc")
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert claim["spec"]["storageClassName"] == "fast"
    assert container_of(sts)["resources"] == {"limits": {"memory": "1200Mi"}}
    assert "data" not in {v["name"] for v in sts["spec"]["template"]["spec"]["volumes"]}


def test_redis_services():
    cm = cached_model()
    headless, client = builders.redis_headless_service(cm), builders.redis_service(cm)
    assert headless["spec"]["clusterIP"] == "None" and headless["metadata"]["name"] == "insurance-charges-redis-headless"
    assert client["metadata"]["name"] == "insurance-charges-redis" and "clusterIP" not in client["spec"]
    assert client["spec"]["ports"][0]["port"] == 6379
    pod_labels = builders.redis_statefulset(cm, "x")["spec"]["template"]["metadata"]["labels"]
    for svc in (headless, client):
        assert all(pod_labels[k] == v for k, v in svc["spec"]["selector"].items())


def test_network_policy_admits_only_this_models_pods():
    cm = cached_model()
    policy = builders.redis_network_policy(cm)
    redis_pods = builders.redis_statefulset(cm, "x")["spec"]["template"]["metadata"]["labels"]
    model_pods = deployment(cm)["spec"]["template"]["metadata"]["labels"]
    assert all(redis_pods[k] == v for k, v in policy["spec"]["podSelector"]["matchLabels"].items())
    (rule,) = policy["spec"]["ingress"]
    (peer,) = rule["from"]
    allowed = peer["podSelector"]["matchLabels"]
    assert all(model_pods[k] == v for k, v in allowed.items())
    assert not all(redis_pods.get(k) == v for k, v in allowed.items()), "Redis pods are not model pods"
    assert allowed["app.kubernetes.io/instance"] == "insurance-charges"
    assert rule["ports"] == [{"protocol": "TCP", "port": 6379}]
    assert "namespaceSelector" not in peer


def test_pdb_selects_redis():
    cm = cached_model()
    pdb = builders.redis_pdb(cm)
    redis_pods = builders.redis_statefulset(cm, "x")["spec"]["template"]["metadata"]["labels"]
    assert all(redis_pods[k] == v for k, v in pdb["spec"]["selector"]["matchLabels"].items())


def test_password_secret_uses_the_given_password_or_a_fresh_one():
    cm = cached_model()
    assert builders.password_secret(cm, "given")["stringData"] == {"password": "given"}
    a, b = builders.password_secret(cm)["stringData"]["password"], builders.password_secret(cm)["stringData"]["password"]
    assert a != b and len(a) >= 40
    assert builders.password_secret(cached_model(**VARIANTS["external"])) is None


def test_builders_are_pure():
    body = copy.deepcopy(BASE)
    cm = cached_model()
    assert builders.desired_children(cm, "u") == builders.desired_children(cm, "u")
    assert body == BASE
