"""The operator against a real kube-apiserver (+ controller-manager, scheduler, kwok nodes).

One `cachedmodel-operator run` subprocess is shared by the module (resync 5 s); each test works in its
own namespace. kwok marks pods Running/Ready, so readiness flows end to end without real containers.
"""
from __future__ import annotations

import base64
import json
import re
import time

import pytest
import yaml

from cachedmodel_operator import builders, schema
from cachedmodel_operator.resource import AUTH_UID, CONFIG_CHECKSUM, CachedModel
from cachedmodel_operator.testing.operator_process import OperatorProcess, install_crd

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(300)]

REDIS_CHILDREN = [("secret", "-redis-auth"), ("configmap", "-redis-config"), ("service", "-redis-headless"),
                  ("service", "-redis"), ("statefulset", "-redis"), ("networkpolicy", "-redis"),
                  ("poddisruptionbudget", "-redis")]
MODEL_CHILDREN = [("configmap", "-config"), ("deployment", ""), ("service", "")]
READY_TIMEOUT = 60


def manifest(name: str, **spec) -> dict:
    body = {"apiVersion": schema.API_VERSION, "kind": schema.KIND, "metadata": {"name": name},
            "spec": {"model": {"image": "cachedmodel/insurance-charges-model:0.1.0",
                               "classPath": "insurance_charges_model.model.InsuranceChargesModel", "replicas": 2}}}
    for section, value in spec.items():
        if section == "model":
            body["spec"]["model"].update(value)
        else:
            body["spec"][section] = value
    return body


@pytest.fixture(scope="module")
def operator(kube_cluster):
    install_crd(kube_cluster)
    process = OperatorProcess(kube_cluster.kubeconfig, resync_seconds=5).start()
    try:
        yield process
    finally:
        process.stop()


class Ctl:
    """kubectl in one namespace, plus the waits the tests need (failures show the operator's log)."""

    def __init__(self, cluster, namespace: str, operator: OperatorProcess):
        self.cluster, self.ns, self.op = cluster, namespace, operator

    def kubectl(self, *args, **kwargs):
        return self.cluster.kubectl(*args, "-n", self.ns, **kwargs)

    def apply(self, obj: dict, check: bool = True):
        return self.kubectl("apply", "-f", "-", input=json.dumps(obj), check=check)

    def get(self, kind: str, name: str) -> dict | None:
        result = self.kubectl("get", kind, name, "-o", "json", "--ignore-not-found", check=False)
        return json.loads(result.stdout) if result.returncode == 0 and result.stdout.strip() else None

    def cm(self, name: str) -> dict:
        return self.get("cachedmodel", name)

    def wait(self, predicate, what: str, timeout: float = READY_TIMEOUT):
        return self.op.wait(predicate, timeout, what)

    def condition(self, name: str, type_: str) -> dict:
        conditions = ((self.cm(name) or {}).get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == type_), {})

    def wait_ready(self, name: str, timeout: float = READY_TIMEOUT) -> dict:
        def ready():
            body = self.cm(name)
            status = (body or {}).get("status") or {}
            conds = {c["type"]: c["status"] for c in status.get("conditions") or []}
            return body if (conds.get("Ready") == "True" and
                            status.get("observedGeneration") == body["metadata"]["generation"]) else None
        return self.wait(ready, f"CachedModel {self.ns}/{name} Ready=True", timeout)

    def children(self, name: str, managed: bool = True) -> list[tuple[str, str]]:
        return [(kind, name + suffix) for kind, suffix in MODEL_CHILDREN + (REDIS_CHILDREN if managed else [])]


@pytest.fixture
def ctl(kube_cluster, k8s_namespace, operator):
    return Ctl(kube_cluster, k8s_namespace, operator)


# ------------------------------------------------------------------ CRD and admission

def test_crd_is_installed_with_short_name_and_columns(kube_cluster, operator):
    resources = kube_cluster.kubectl("api-resources", "--api-group", schema.GROUP, "-o", "wide").stdout
    assert "cachedmodels" in resources and "cmodel" in resources and "CachedModel" in resources
    header = kube_cluster.kubectl("get", "cmodel", "-A").stdout
    assert header == "" or "READY" in header  # no resources yet prints nothing on stdout
    crd = json.loads(kube_cluster.kubectl("get", "crd", "cachedmodels.cachedmodel.dev", "-o", "json").stdout)
    columns = [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert columns[:5] == ["Ready", "Replicas", "Desired", "Maxmemory", "Policy"]


BAD = [
    ({"cache": {"serder": "Pickle"}}, "spec.cache.serder"),
    ({"redis": {"maxmemoryPolicy": "lru"}}, "spec.redis.maxmemoryPolicy"),
    ({"redis": {"maxmemory": "256 MB"}}, "spec.redis.maxmemory"),
    ({"model": {"replicas": -1}}, "spec.model.replicas"),
    ({"model": {"port": 70000}}, "spec.model.port"),
    ({"model": {"resources": {"limits": {"memory": "lots"}}}}, "spec.model.resources.limits.memory"),
    ({"redis": {"persistence": {"enabled": True, "size": "big"}}}, "spec.redis.persistence.size"),
    ({"redis": {"external": {"url": "http://cache:6379"}}}, "spec.redis.external.url"),
    ({"redis": {"external": {"url": "redis://cache:99999/0"}}}, "spec.redis.external.url"),  # decorator refuses
    ({"redis": {"external": {"url": "redis://c:6379"}, "maxmemory": "1gb"}}, "spec.redis.external"),
    ({"cache": {"reducedPrecision": {"fields": ["bmi"]}}}, "spec.cache.reducedPrecision.numberOfPlaces"),
    ({"cache": {"hashingFields": ["age", "age"]}}, "spec.cache.hashingFields[1]"),
    ({"cache": {"ttlSeconds": -5}}, "spec.cache.ttlSeconds"),
    ({"redis": {"maxmemoryPolicy": "volatile-lru"}}, "spec.redis.maxmemoryPolicy"),
    ({"model": {"env": [{"name": "REDIS_URL", "value": "redis://elsewhere"}]}}, "spec.model.env"),
    ({"model": {"classPath": "not a class path"}}, "spec.model.classPath"),
    ({"cache": {"serdr": "JSON"}}, "spec.cache.serdr"),
    # env[].valueFrom is core/v1's EnvVarSource: no unknown shapes, exactly one source, its required keys
    ({"model": {"env": [{"name": "X", "valueFrom": {"foo": 1}}]}}, "spec.model.env[0].valueFrom"),
    ({"model": {"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"},
                                                    "fieldRef": {"fieldPath": "metadata.name"}}}]}},
     "spec.model.env[0].valueFrom"),
    ({"model": {"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s"}}}]}},
     "spec.model.env[0].valueFrom.secretKeyRef.key"),
    # spec.redis.mode and its topologies (issue 11)
    ({"redis": {"mode": "replicated"}}, "spec.redis.mode"),
    ({"redis": {"sentinel": {"replicas": 2}}}, "spec.redis.sentinel"),
    ({"redis": {"mode": "sentinel", "sentinel": {"replicas": 0}}}, "spec.redis.sentinel.replicas"),
    ({"redis": {"mode": "cluster", "cluster": {"shards": 2}}}, "spec.redis.cluster.shards"),
    ({"redis": {"mode": "cluster", "cluster": {"replicasPerShard": 0}}}, "spec.redis.cluster.replicasPerShard"),
    ({"redis": {"mode": "sentinel", "cluster": {"shards": 3}}}, "spec.redis.cluster"),
    ({"redis": {"mode": "cluster", "external": {"url": "redis://c:6379"}}}, "spec.redis.external"),
    ({"redis": {"external": {"url": "redis://c:6379", "clusterNodes": ["c:6379"]}}}, "spec.redis.external"),
    ({"redis": {"external": {"passwordSecretRef": {"name": "s", "key": "k"}}}}, "spec.redis.external"),
    ({"redis": {"external": {"sentinels": ["s:26379"]}}}, "spec.redis.external.sentinelService"),
    ({"redis": {"external": {"sentinels": ["s:26379:1"], "sentinelService": "m"}}},
     "spec.redis.external.sentinels[0]"),
    ({"redis": {"external": {"sentinels": ["s:26379", "s:26379"], "sentinelService": "m"}}},
     "spec.redis.external.sentinels[1]"),
    ({"redis": {"external": {"clusterNodes": ["c"]}}}, "spec.redis.external.clusterNodes[0]"),
    ({"redis": {"external": {"clusterNodes": ["c:6379"], "sentinelPasswordSecretRef": {"name": "s", "key": "k"}}}},
     "spec.redis.external.sentinelPasswordSecretRef"),
    ({"redis": {"external": {"url": "redis://c:6379", "tls": True}}}, "spec.redis.external.url"),
    ({"model": {"env": [{"name": "REDIS_SENTINELS", "value": "s:26379"}]}}, "spec.model.env"),
    # issue 19: pod fields and cache options, refused at admission and by render, naming the field
    ({"model": {"podLabels": {"app.kubernetes.io/instance": "other"}}}, "spec.model.podLabels"),
    ({"model": {"podLabels": {"-bad": "x"}}}, "spec.model.podLabels"),
    ({"model": {"podAnnotations": {"cachedmodel.dev/config-checksum": "x"}}}, "spec.model.podAnnotations"),
    ({"model": {"nodeSelector": {"a/b/c": "x"}}}, "spec.model.nodeSelector"),
    ({"model": {"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]}}, "spec.model.tolerations[0]"),
    ({"model": {"tolerations": [{"key": "k", "tolerationSeconds": 5}]}}, "spec.model.tolerations[0]"),
    ({"model": {"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "z", "minDomains": 2,
                                               "whenUnsatisfiable": "ScheduleAnyway"}]}},
     "spec.model.topologySpreadConstraints[0]"),
    ({"model": {"volumes": [{"name": "tmp", "emptyDir": {}}]}}, "spec.model.volumes"),
    ({"model": {"volumes": [{"name": "d", "emptyDir": {}, "secret": {"secretName": "s"}}]}}, "spec.model.volumes[0]"),
    ({"model": {"volumes": [{"name": "d", "hostPath": {"path": "/"}}]}}, "spec.model.volumes[0]"),
    ({"model": {"volumes": [{"name": "d", "secret": {"secretName": "s", "items": [{"key": "k", "path": "../x"}]}}]}},
     "spec.model.volumes[0].secret.items[0].path"),
    ({"model": {"volumes": [{"name": "d", "emptyDir": {}}], "volumeMounts": [{"name": "d", "mountPath": "/etc"}]}},
     "spec.model.volumeMounts[0]"),
    ({"model": {"volumeMounts": [{"name": "nothing", "mountPath": "/data"}]}}, "spec.model.volumeMounts"),
    ({"model": {"startupTimeoutSeconds": 5}}, "spec.model.startupTimeoutSeconds"),
    ({"redis": {"external": {"url": "redis://c:6379"}, "tolerations": [{"operator": "Exists"}]}},
     "spec.redis.external"),
    ({"redis": {"tolerations": [{"value": "v"}]}}, "spec.redis.tolerations[0]"),
    ({"cache": {"leaseSeconds": 3}}, "spec.cache.leaseSeconds"),
    ({"cache": {"staleSeconds": 30}}, "spec.cache.staleSeconds"),
    ({"cache": {"ttlSeconds": 60, "earlyRefreshBeta": 1}}, "spec.cache.earlyRefreshBeta"),
    ({"cache": {"circuitBreaker": {"failures": 0}}}, "spec.cache.circuitBreaker.failures"),
    ({"cache": {"epoch": -1}}, "spec.cache.epoch"),
    # issue 21: autoscaling needs a CPU request and a sane range
    ({"model": {"autoscaling": {"maxReplicas": 3}}}, "spec.model.autoscaling"),
    ({"model": {"autoscaling": {"minReplicas": 4, "maxReplicas": 3}, "resources": {"requests": {"cpu": "1"}}}},
     "spec.model.autoscaling"),
]


@pytest.mark.parametrize("change,field", BAD, ids=[f for _, f in BAD])
def test_invalid_resources_are_refused_naming_the_field(ctl, change, field):
    obj = manifest("bad", **change)
    result = ctl.apply(obj, check=False)
    assert result.returncode != 0, f"API server accepted a bad resource: {change}"
    assert field in result.stderr, result.stderr
    assert ctl.cm("bad") is None
    with pytest.raises(schema.InvalidCachedModel) as caught:  # render refuses the same input
        schema.validate(obj)
    assert any(error.startswith(field) for error in caught.value.errors), caught.value.errors


def test_every_pod_field_and_cache_option_is_accepted_and_reaches_the_children(ctl):
    """The full pod-fields sample passes admission (its CEL rules within the API server's cost budget), and
    the Deployment and StatefulSets the operator makes from it pass the API server's own core/v1 validation."""
    from tests.support.cachedmodel_samples import EVERY_CACHE_OPTION, POD_FIELDS

    ctl.apply(manifest("pods", model=POD_FIELDS["model"], redis=POD_FIELDS["redis"], cache=EVERY_CACHE_OPTION))
    deployment = ctl.wait(lambda: ctl.get("deployment", "pods"), "Deployment pods")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["tolerations"][0]["key"] == "dedicated" and pod["nodeSelector"]["pool"] == "cpu"
    assert pod["serviceAccountName"] == "model-reader" and pod["imagePullSecrets"] == [{"name": "registry"}]
    assert [v["name"] for v in pod["volumes"]][-4:] == ["trace", "weights", "creds", "token"]
    assert deployment["spec"]["template"]["metadata"]["labels"]["team"] == "pricing"
    for name in ("pods-redis", "pods-redis-sentinel"):
        statefulset = ctl.wait(lambda: ctl.get("statefulset", name), f"StatefulSet {name}")
        assert statefulset["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "memory"}
    decorator = yaml.safe_load(ctl.get("configmap", "pods-config")["data"]["rest_config.yaml"])
    options = decorator["models"][0]["decorators"][0]["configuration"]
    assert options["shared_single_flight"] is True and options["epoch"] == 3


def test_bad_name_is_refused(ctl):
    result = ctl.apply(manifest("a" * 41), check=False)
    assert result.returncode != 0 and "metadata.name" in result.stderr


def test_name_of_another_cachedmodels_redis_service_is_refused(ctl):
    """`shop-redis` would take over the Redis Service and ConfigMap of CachedModel `shop` (same field manager)."""
    ctl.apply(manifest("shop"))
    result = ctl.apply(manifest("shop-redis"), check=False)
    assert result.returncode != 0 and "metadata.name must not end with -redis" in result.stderr, result.stderr
    assert ctl.cm("shop-redis") is None


# ------------------------------------------------------------------ lifecycle

def test_cachedmodel_produces_every_child_and_becomes_ready(ctl):
    obj = manifest("ic", cache={"ttlSeconds": 600, "hashingFields": ["age", "bmi"]},
                   redis={"maxmemory": "128mb", "maxmemoryPolicy": "allkeys-lfu"})
    ctl.apply(obj)
    ctl.wait(lambda: all(ctl.get(k, n) for k, n in ctl.children("ic")), "every child of ic")
    body = ctl.cm("ic")
    uid = body["metadata"]["uid"]
    for kind, name in ctl.children("ic"):
        meta = ctl.get(kind, name)["metadata"]
        assert [(r["kind"], r["uid"], r.get("controller")) for r in meta["ownerReferences"]] == \
            [("CachedModel", uid, True)], (kind, name)
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "cachedmodel-operator"
        assert meta["labels"]["app.kubernetes.io/instance"] == "ic"

    expected = CachedModel.from_body({**obj, "metadata": {**body["metadata"]}})
    config = ctl.get("configmap", "ic-config")["data"]
    assert config == builders.service_config_map(expected)["data"]
    decorator = yaml.safe_load(config["rest_config.yaml"])["models"][0]["decorators"][0]["configuration"]
    assert decorator["ttl_seconds"] == 600 and decorator["hashing_fields"] == ["age", "bmi"]
    conf = ctl.get("configmap", "ic-redis-config")["data"]["redis.conf"].splitlines()
    assert "maxmemory 128mb" in conf and "maxmemory-policy allkeys-lfu" in conf and 'save ""' in conf
    password = base64.b64decode(ctl.get("secret", "ic-redis-auth")["data"]["password"]).decode()
    assert len(password) >= 40
    deployment = ctl.get("deployment", "ic")
    template = deployment["spec"]["template"]
    assert template["metadata"]["annotations"][CONFIG_CHECKSUM] == builders.config_checksum(config)
    env = {e["name"]: e for e in template["spec"]["containers"][0]["env"]}
    assert env["REDIS_URL"]["value"] == f"redis://ic-redis.{ctl.ns}.svc:6379/0"
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "ic-redis-auth", "key": "password"}
    assert template["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True

    ready = ctl.wait_ready("ic")
    status = ready["status"]
    assert status["url"] == f"http://ic.{ctl.ns}.svc:8000"
    assert status["replicas"] == {"ready": 2, "desired": 2, "current": 2}
    assert {c["type"]: c["status"] for c in status["conditions"]} == \
        {"Ready": "True", "ModelReady": "True", "CacheReady": "True"}
    assert all(c.get("lastTransitionTime") for c in status["conditions"])
    pods = json.loads(ctl.kubectl("get", "pods", "-l", "app.kubernetes.io/instance=ic", "-o", "json").stdout)["items"]
    assert len(pods) == 3  # 2 model pods + 1 Redis pod, all made Ready by kwok
    table = ctl.kubectl("get", "cmodel", "ic").stdout
    assert "True" in table and "128mb" in table and "allkeys-lfu" in table


def test_spec_edits_propagate_and_roll_the_pods(ctl):
    ctl.apply(manifest("edit"))
    ready = ctl.wait_ready("edit")
    lt_before = ctl.condition("edit", "Ready")["lastTransitionTime"]
    checksum = ctl.get("deployment", "edit")["spec"]["template"]["metadata"]["annotations"][CONFIG_CHECKSUM]
    redis_checksum = ctl.get("statefulset", "edit-redis")["spec"]["template"]["metadata"]["annotations"][CONFIG_CHECKSUM]
    password = ctl.get("secret", "edit-redis-auth")["data"]["password"]

    ctl.kubectl("patch", "cmodel", "edit", "--type", "merge", "-p", json.dumps(
        {"spec": {"model": {"replicas": 3}, "cache": {"ttlSeconds": 120, "serder": "JSON"},
                  "redis": {"maxmemory": "64mb", "maxmemoryPolicy": "volatile-lru"}}}))

    def propagated():
        deployment = ctl.get("deployment", "edit")
        conf = ctl.get("configmap", "edit-redis-config")["data"]["redis.conf"].splitlines()
        return (deployment["spec"]["replicas"] == 3 and "maxmemory 64mb" in conf
                and "maxmemory-policy volatile-lru" in conf
                and deployment["spec"]["template"]["metadata"]["annotations"][CONFIG_CHECKSUM] != checksum)
    ctl.wait(propagated, "spec edit reaching the children", 30)
    decorator = yaml.safe_load(ctl.get("configmap", "edit-config")["data"]["rest_config.yaml"])
    assert decorator["models"][0]["decorators"][0]["configuration"]["ttl_seconds"] == 120
    assert ctl.get("statefulset", "edit-redis")["spec"]["template"]["metadata"]["annotations"][CONFIG_CHECKSUM] \
        != redis_checksum, "a redis.conf change must roll Redis"
    assert ctl.get("secret", "edit-redis-auth")["data"]["password"] == password, "password must stay stable"
    after = ctl.wait_ready("edit")
    assert after["metadata"]["generation"] > ready["metadata"]["generation"]
    assert after["status"]["replicas"] == {"ready": 3, "desired": 3, "current": 3}
    assert after["status"]["redis"]["maxmemory"] == "64mb"
    assert ctl.condition("edit", "Ready")["lastTransitionTime"] >= lt_before


def test_deleted_and_edited_children_are_repaired(ctl):
    ctl.apply(manifest("heal"))
    ctl.wait_ready("heal")
    password = ctl.get("secret", "heal-redis-auth")["data"]["password"]
    for kind, name in [("deployment", "heal"), ("service", "heal-redis"), ("configmap", "heal-config"),
                       ("statefulset", "heal-redis"), ("networkpolicy", "heal-redis")]:
        uid = ctl.get(kind, name)["metadata"]["uid"]
        started = time.monotonic()
        ctl.kubectl("delete", kind, name, "--wait=false")
        ctl.wait(lambda: (ctl.get(kind, name) or {}).get("metadata", {}).get("uid") not in (None, uid),
                 f"{kind}/{name} recreated", 20)
        assert time.monotonic() - started < 20
    # hand edits of fields the operator owns are reverted
    ctl.kubectl("scale", "deployment", "heal", "--replicas", "7")
    ctl.kubectl("patch", "configmap", "heal-redis-config", "--type", "merge", "-p",
                json.dumps({"data": {"redis.conf": "maxmemory 1mb\n"}}))
    ctl.wait(lambda: ctl.get("deployment", "heal")["spec"]["replicas"] == 2, "replicas reverted", 20)
    ctl.wait(lambda: "maxmemory 256mb" in ctl.get("configmap", "heal-redis-config")["data"]["redis.conf"],
             "redis.conf reverted", 20)
    assert ctl.get("secret", "heal-redis-auth")["data"]["password"] == password, "untouched Secret is kept"
    # a deleted Secret comes back (new password) and both sides are rolled onto it
    ctl.kubectl("delete", "secret", "heal-redis-auth")
    ctl.wait(lambda: ctl.get("secret", "heal-redis-auth"), "Secret recreated (resync)", 30)
    new_uid = ctl.get("secret", "heal-redis-auth")["metadata"]["uid"]
    ctl.wait(lambda: all(ctl.get(k, n)["spec"]["template"]["metadata"]["annotations"].get(AUTH_UID) == new_uid
                         for k, n in [("deployment", "heal"), ("statefulset", "heal-redis")]),
             "pods rolled onto the new Secret", 30)
    ctl.wait_ready("heal")


def test_external_redis_makes_no_redis_and_switching_prunes_it(ctl):
    ctl.apply(manifest("ext"))
    ctl.wait(lambda: ctl.get("statefulset", "ext-redis"), "managed Redis first")
    external = {"external": {"url": "redis://cache.example:6379/1",
                             "passwordSecretRef": {"name": "cache-auth", "key": "pw"}}}
    ctl.apply(manifest("ext", redis=external))  # client-side apply removes the managed fields it set
    ctl.wait(lambda: all(ctl.get(k, n) is None for k, n in ctl.children("ext")[len(MODEL_CHILDREN):]),
             "managed Redis children pruned", 30)
    env = {e["name"]: e for e in ctl.get("deployment", "ext")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["REDIS_URL"]["value"] == "redis://cache.example:6379/1"
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "cache-auth", "key": "pw"}
    status = ctl.wait_ready("ext")["status"]
    assert status["redis"]["source"] == "external" and status["redis"]["mode"] == "standalone"
    assert ctl.condition("ext", "CacheReady")["reason"] == "ExternalRedis"


def test_cache_disabled_serves_without_decorator(ctl):
    ctl.apply(manifest("plain", cache={"enabled": False}))
    ctl.wait_ready("plain")
    config = yaml.safe_load(ctl.get("configmap", "plain-config")["data"]["rest_config.yaml"])
    assert "decorators" not in config["models"][0]
    assert ctl.get("statefulset", "plain-redis") is None and ctl.get("secret", "plain-redis-auth") is None


def test_deleting_the_cachedmodel_removes_its_children(ctl):
    ctl.apply(manifest("gone"))
    ctl.wait(lambda: all(ctl.get(k, n) for k, n in ctl.children("gone")), "every child of gone")
    ctl.kubectl("delete", "cmodel", "gone", "--wait=true", timeout=60)
    ctl.wait(lambda: all(ctl.get(k, n) is None for k, n in ctl.children("gone")),
             "garbage collection of every child", 60)


def test_errors_become_a_condition_and_an_event_with_backoff(ctl):
    ctl.kubectl("create", "quota", "no-services", "--hard=services=0")
    ctl.wait(lambda: (ctl.get("resourcequota", "no-services").get("status") or {}).get("hard"), "quota status", 30)
    ctl.apply(manifest("quota"))
    ctl.wait(lambda: ctl.condition("quota", "Ready").get("reason") == "ReconcileError", "ReconcileError condition")
    assert "services" in ctl.condition("quota", "Ready")["message"]
    events = json.loads(ctl.kubectl("get", "events", "--field-selector", "involvedObject.name=quota",
                                    "-o", "json").stdout)["items"]
    assert any(e["type"] == "Warning" and e["reason"] == "ReconcileError" for e in events)
    attempt_line = re.compile(rf"{re.escape(ctl.ns)}/quota reconcile failed \(attempt (\d+)\)")

    def last_attempt() -> int:
        return max((int(n) for n in attempt_line.findall(ctl.op.tail(400))), default=0)

    first = last_attempt()
    assert first >= 1
    started = time.monotonic()
    ctl.wait(lambda: last_attempt() >= first + 2, "two more retries", 60)
    elapsed = time.monotonic() - started
    # the backoff doubles from 2 s (2, 4, 8 ... s, ±10 %): two more attempts take at least ~3.6 s; a hot
    # loop would make them in milliseconds
    assert elapsed >= 3.0, f"attempts {first} -> {first + 2} within {elapsed:.1f}s: hot loop?"
    ctl.kubectl("delete", "quota", "no-services")
    ctl.wait_ready("quota", timeout=90)


def test_a_child_name_controlled_by_another_object_is_not_taken_over(ctl):
    """Server-side apply with force would seize it (and the two controllers would fight): refuse, and say so."""
    owner = json.loads(ctl.kubectl("create", "configmap", "someone", "-o", "json").stdout)["metadata"]
    ctl.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "taken", "ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "someone", "uid": owner["uid"], "controller": True}]},
        "spec": {"selector": {"app": "theirs"}, "ports": [{"port": 80}]}})
    ctl.apply(manifest("taken"))
    ctl.wait(lambda: ctl.condition("taken", "Ready").get("reason") == "ReconcileError", "ReconcileError condition")
    assert "controlled by ConfigMap someone" in ctl.condition("taken", "Ready")["message"]
    service = ctl.get("service", "taken")
    assert service["spec"]["selector"] == {"app": "theirs"}
    assert [r["name"] for r in service["metadata"]["ownerReferences"]] == ["someone"]
    assert ctl.get("deployment", "taken") is None, "nothing applied while a child name is taken"
    ctl.kubectl("delete", "service", "taken")  # the way out: the name is free again
    ctl.wait_ready("taken", timeout=90)


def test_a_secret_of_its_name_that_it_does_not_own_is_never_deleted(ctl):
    """`<name>-redis-auth` may be someone's credentials: without a password key the operator used to delete
    and re-create it. It refuses (status + event) and leaves it as it is."""
    ctl.kubectl("create", "secret", "generic", "mine-redis-auth", "--from-literal=token=do-not-lose")
    uid = ctl.get("secret", "mine-redis-auth")["metadata"]["uid"]
    ctl.apply(manifest("mine"))
    ctl.wait(lambda: ctl.condition("mine", "Ready").get("reason") == "ReconcileError", "ReconcileError condition")
    assert "Secret" in ctl.condition("mine", "Ready")["message"]
    assert "not owned by this CachedModel" in ctl.condition("mine", "Ready")["message"]
    events = json.loads(ctl.kubectl("get", "events", "--field-selector", "involvedObject.name=mine",
                                    "-o", "json").stdout)["items"]
    assert any(e["reason"] == "ReconcileError" and "mine-redis-auth" in e["message"] for e in events)
    secret = ctl.get("secret", "mine-redis-auth")
    assert secret["metadata"]["uid"] == uid
    assert secret["data"] == {"token": base64.b64encode(b"do-not-lose").decode()}
    ctl.kubectl("delete", "secret", "mine-redis-auth")  # the way out: the name is free again
    ctl.wait_ready("mine", timeout=90)
    assert ctl.get("secret", "mine-redis-auth")["metadata"]["ownerReferences"][0]["name"] == "mine"


def test_a_password_secret_brought_by_the_user_is_used_and_never_touched(ctl):
    """Bring your own password: a `<name>-redis-auth` with a `password` key that this CachedModel does not
    control is the password Redis and the model pods run with; a Normal event says so; the operator never
    rewrites it and it outlives the CachedModel. Here another object controls it, as Sealed Secrets and External
    Secrets do (a ConfigMap stands in for theirs): before, that was a ChildConflict ('controlled by ...')."""
    ctl.kubectl("create", "configmap", "byo-secrets-tool")
    tool = ctl.get("configmap", "byo-secrets-tool")["metadata"]["uid"]
    ctl.apply({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
               "metadata": {"name": "byo-redis-auth", "ownerReferences": [
                   {"apiVersion": "v1", "kind": "ConfigMap", "name": "byo-secrets-tool", "uid": tool,
                    "controller": True}]},
               "data": {"password": base64.b64encode(b"my-own-password").decode()}})
    secret = ctl.get("secret", "byo-redis-auth")
    ctl.apply(manifest("byo"))
    ctl.wait_ready("byo")
    for kind, name in [("deployment", "byo"), ("statefulset", "byo-redis")]:
        template = ctl.get(kind, name)["spec"]["template"]
        assert template["metadata"]["annotations"][AUTH_UID] == secret["metadata"]["uid"]
    events = json.loads(ctl.kubectl("get", "events", "--field-selector", "involvedObject.name=byo",
                                    "-o", "json").stdout)["items"]
    provided = [e for e in events if e["reason"] == "RedisPasswordProvided"]
    assert provided and all(e["type"] == "Normal" and "byo-redis-auth" in e["message"] for e in provided), events
    after = ctl.get("secret", "byo-redis-auth")
    assert after["metadata"]["resourceVersion"] == secret["metadata"]["resourceVersion"], "never written"
    assert after["data"] == secret["data"]
    assert after["metadata"]["ownerReferences"] == secret["metadata"]["ownerReferences"]
    ctl.kubectl("delete", "cmodel", "byo", "--wait=true", timeout=60)
    ctl.wait(lambda: ctl.get("deployment", "byo") is None and ctl.get("statefulset", "byo-redis") is None,
             "garbage collection of the CachedModel's children", 60)
    assert ctl.get("secret", "byo-redis-auth")["metadata"]["uid"] == secret["metadata"]["uid"]


def test_operator_restart_loses_nothing(ctl, operator):
    ctl.apply(manifest("survive"))
    ctl.wait_ready("survive")
    password = ctl.get("secret", "survive-redis-auth")["data"]["password"]
    operator.kill()
    try:
        ctl.kubectl("patch", "cmodel", "survive", "--type", "merge", "-p",
                    json.dumps({"spec": {"model": {"replicas": 1}}}))
        ctl.kubectl("delete", "service", "survive")
        ctl.apply(manifest("newcomer"))
    finally:
        operator.start()
    ctl.wait(lambda: ctl.get("service", "survive"), "deleted Service restored after restart")
    ctl.wait(lambda: ctl.get("deployment", "survive")["spec"]["replicas"] == 1, "edit made while down applied")
    assert ctl.wait_ready("survive")["status"]["replicas"] == {"ready": 1, "desired": 1, "current": 1}
    ctl.wait_ready("newcomer")
    assert ctl.get("secret", "survive-redis-auth")["data"]["password"] == password


# ------------------------------------------------------------------ scaling (issue 21)

def test_kubectl_scale_moves_the_model_pods_through_the_scale_subresource(ctl):
    ctl.apply(manifest("scaled", model={"replicas": 1}))
    ctl.wait_ready("scaled")
    ctl.kubectl("scale", "cachedmodel", "scaled", "--replicas=3")
    ctl.wait(lambda: ctl.get("deployment", "scaled")["spec"]["replicas"] == 3, "Deployment scaled to 3")
    ready = ctl.wait_ready("scaled")
    assert ready["spec"]["model"]["replicas"] == 3
    assert ready["status"]["replicas"] == {"ready": 3, "desired": 3, "current": 3}
    scale = json.loads(ctl.kubectl("get", "cachedmodel", "scaled", "--subresource=scale", "-o", "json").stdout)
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 3 and scale["status"]["replicas"] == 3
    selected = json.loads(ctl.kubectl("get", "pods", "-l", scale["status"]["selector"], "-o", "json").stdout)
    assert {p["metadata"]["labels"]["app.kubernetes.io/component"] for p in selected["items"]} == {"model"}
    assert len([p for p in selected["items"] if not p["metadata"].get("deletionTimestamp")]) == 3


def test_autoscaling_hpa_moves_replicas_the_operator_follows_and_unsetting_it_prunes_the_hpa(ctl, operator):
    """The real HPA controller (kube-controller-manager) raises spec.model.replicas to minReplicas through the
    scale subresource (it does so before reading any metric); the operator carries that into the Deployment
    and never resets it, across a resync and an operator restart; without autoscaling the HPA goes."""
    autoscaled = {"replicas": 1, "resources": {"requests": {"cpu": "100m"}},
                  "autoscaling": {"minReplicas": 3, "maxReplicas": 5}}
    ctl.apply(manifest("auto", model=autoscaled))
    hpa = ctl.wait(lambda: ctl.get("hpa", "auto"), "HorizontalPodAutoscaler auto")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": schema.API_VERSION, "kind": schema.KIND, "name": "auto"}
    assert [r["kind"] for r in hpa["metadata"]["ownerReferences"]] == ["CachedModel"]
    ctl.wait(lambda: ctl.cm("auto")["spec"]["model"]["replicas"] == 3, "the HPA raised spec.model.replicas to 3",
             timeout=120)
    ctl.wait(lambda: ctl.get("deployment", "auto")["spec"]["replicas"] == 3, "Deployment follows the HPA")
    operator.kill()
    operator.start()
    # a spec edit after the restart: its reconcile (observedGeneration) ran with the HPA's replicas in place
    ctl.kubectl("patch", "cachedmodel", "auto", "--type", "merge", "-p", json.dumps({"spec": {"cache": {"ttlSeconds": 60}}}))
    ctl.wait_ready("auto")
    assert ctl.get("deployment", "auto")["spec"]["replicas"] == 3 and ctl.cm("auto")["spec"]["model"]["replicas"] == 3
    ctl.kubectl("patch", "cachedmodel", "auto", "--type", "json", "-p",
                json.dumps([{"op": "remove", "path": "/spec/model/autoscaling"}]))
    ctl.wait(lambda: ctl.get("hpa", "auto") is None, "HPA pruned once spec.model.autoscaling is gone")


def test_enabling_persistence_replaces_the_statefulset(ctl):
    """volumeClaimTemplates are immutable: the operator replaces the StatefulSet instead of failing."""
    ctl.apply(manifest("disk"))
    ctl.wait(lambda: ctl.get("statefulset", "disk-redis"), "StatefulSet")
    old_uid = ctl.get("statefulset", "disk-redis")["metadata"]["uid"]
    ctl.kubectl("patch", "cmodel", "disk", "--type", "merge", "-p",
                json.dumps({"spec": {"redis": {"persistence": {"enabled": True, "size": "2Gi"}}}}))

    def replaced():
        sts = ctl.get("statefulset", "disk-redis")
        return (sts and sts["metadata"]["uid"] != old_uid and
                sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "2Gi")
    ctl.wait(replaced, "StatefulSet replaced with a volume claim template", 30)
    assert "appendonly yes" in ctl.get("configmap", "disk-redis-config")["data"]["redis.conf"].splitlines()
    assert ctl.condition("disk", "Ready").get("reason") != "ReconcileError"


# ------------------------------------------------------------------ why pods are not ready

BAD_FIELD = ("cachedmodel.options.ConfigurationError: option 'hashing_fields': 'agee' is not an input field of "
             "model insurance_charges_model (input fields: age, sex, bmi, children, smoker, region)")


def kubelet_status(pod: dict, ready: bool, waiting_message: str = "") -> dict:
    """A pod status as a kubelet reports it: crash-looping (the decorator refused an option) or running."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    flag = "True" if ready else "False"
    container = {"name": "model", "image": pod["spec"]["containers"][0]["image"], "ready": ready,
                 "restartCount": 0 if ready else 3, "started": ready}
    if ready:
        container.update(state={"running": {"startedAt": now}}, lastState={})
    else:
        container.update(
            state={"waiting": {"reason": "CrashLoopBackOff", "message": waiting_message}},
            lastState={"terminated": {"exitCode": 1, "reason": "Error", "startedAt": now, "finishedAt": now,
                                      "message": f"Traceback (most recent call last):\n  ...\n{BAD_FIELD}\n"
                                                 "INFO:     Shutting down\n"}})
    return {"status": {"phase": "Running", "containerStatuses": [container], "conditions": [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
        {"type": "Initialized", "status": "True", "lastTransitionTime": now},
        {"type": "ContainersReady", "status": flag, "lastTransitionTime": now},
        {"type": "Ready", "status": flag, "lastTransitionTime": now}]}}


def test_a_crash_looping_model_pod_is_explained_in_status_and_one_event(ctl):
    """kwok's pod stage only moves Pending pods to Running, so a status patched onto a Running pod (through
    the status subresource, as the kubelet writes it) stays: the operator sees a real crash-loop status."""
    ctl.apply(manifest("crash"))
    ctl.wait_ready("crash")
    container = ctl.get("deployment", "crash")["spec"]["template"]["spec"]["containers"][0]
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert ctl.get("statefulset", "crash-redis")["spec"]["template"]["spec"]["containers"][0][
        "terminationMessagePolicy"] == "FallbackToLogsOnError"
    pods = json.loads(ctl.kubectl("get", "pods", "-l", "app.kubernetes.io/instance=crash,"
                                  "app.kubernetes.io/component=model", "-o", "json").stdout)["items"]
    assert len(pods) == 2
    pod = pods[0]
    name = pod["metadata"]["name"]

    def patch_pod(status: dict):
        ctl.kubectl("patch", "pod", name, "--subresource=status", "--type=merge", "-p", json.dumps(status))

    def crash_events():
        events = json.loads(ctl.kubectl("get", "events", "--field-selector",
                                        "involvedObject.name=crash,involvedObject.kind=CachedModel",
                                        "-o", "json").stdout)["items"]
        return [e for e in events if e["type"] == "Warning" and e["reason"] == "CrashLoopBackOff"]

    patch_pod(kubelet_status(pod, ready=False, waiting_message="back-off 40s restarting failed container=model"))
    ctl.wait(lambda: ctl.condition("crash", "ModelReady").get("reason") == "CrashLoopBackOff",
             "ModelReady=False/CrashLoopBackOff")
    model_ready = ctl.condition("crash", "ModelReady")
    assert model_ready["status"] == "False"
    assert model_ready["message"].startswith(f"1/2 pods ready; pod {name}: container model: CrashLoopBackOff: "
                                             "back-off 40s"), model_ready["message"]
    assert f"last termination: exit code 1 (Error): {BAD_FIELD}" in model_ready["message"]
    assert ctl.condition("crash", "Ready")["reason"] == "CrashLoopBackOff"
    ctl.wait(lambda: crash_events(), "Warning event CrashLoopBackOff on the CachedModel", 20)
    assert BAD_FIELD in crash_events()[0]["message"]
    described = ctl.kubectl("describe", "cmodel", "crash").stdout
    assert "CrashLoopBackOff" in described and "'agee' is not an input field" in described

    # the kubelet's next report (longer back-off): status follows, but the reason is not news: no new event
    patch_pod(kubelet_status(pod, ready=False, waiting_message="back-off 1m20s restarting failed container=model"))
    ctl.wait(lambda: "back-off 1m20s" in ctl.condition("crash", "ModelReady").get("message", ""),
             "ModelReady message follows the pod")
    assert len(crash_events()) == 1, [e["message"] for e in crash_events()]

    # the pod recovers: the condition tells so
    patch_pod(kubelet_status(pod, ready=True))
    ctl.wait_ready("crash")
    assert ctl.condition("crash", "ModelReady")["reason"] == "PodsReady"
    assert len(crash_events()) == 1


# ------------------------------------------------------------------ topologies (spec.redis.mode, issue 11)

def test_mode_and_cluster_shape_cannot_change_after_creation(ctl):
    """Transition rules (CEL with oldSelf) that only the API server can apply; schema.transition_errors agrees."""
    ctl.apply(manifest("imm"))
    cases = [  # (redis of the update, refused field or None)
        ({"mode": "sentinel"}, "spec.redis.mode"),
        ({"mode": "standalone", "maxmemory": "64mb"}, None),
        ({"external": {"url": "redis://c:6379"}}, None),  # through external: allowed
        ({"mode": "cluster"}, None),
        ({"mode": "cluster", "cluster": {"shards": 4}}, "spec.redis.cluster"),
        ({"mode": "cluster", "cluster": {"replicasPerShard": 2}}, "spec.redis.cluster"),
        ({"mode": "sentinel"}, "spec.redis.mode"),
        ({"mode": "cluster", "cluster": {"shards": 3, "replicasPerShard": 1}, "maxmemory": "64mb"}, None),
    ]
    for redis, field in cases:
        before = ctl.cm("imm")
        obj = manifest("imm", redis=redis)
        result = ctl.kubectl("patch", "cmodel", "imm", "--type", "json", "-p",
                             json.dumps([{"op": "add", "path": "/spec/redis", "value": redis}]), check=False)
        assert (result.returncode != 0) == (field is not None), (redis, result.stderr)
        assert bool(schema.transition_errors(before, obj)) == (field is not None), redis
        if field:
            assert field in result.stderr and "cannot change after creation" in result.stderr, result.stderr


def _topology_ready(ctl, name, redis, data_pods, sentinels):
    ctl.apply(manifest(name, redis=redis))
    ready = ctl.wait_ready(name)
    status = ready["status"]["redis"]
    sts = ctl.get("statefulset", f"{name}-redis")
    assert sts["spec"]["replicas"] == data_pods
    assert ctl.get("service", f"{name}-redis-headless")["spec"]["publishNotReadyAddresses"] is True
    assert ctl.get("service", f"{name}-redis") is None, "no ClusterIP in front of primaries and replicas"
    assert (status["readyNodes"], status["desiredNodes"]) == (data_pods + sentinels, data_pods + sentinels)
    pods = json.loads(ctl.kubectl("get", "pods", "-l", f"app.kubernetes.io/instance={name}", "-o", "json").stdout)
    assert len(pods["items"]) == data_pods + sentinels + 2  # + 2 model pods, all made Ready by kwok
    return ready, sts


def test_sentinel_mode_makes_data_pods_and_sentinels(ctl):
    ready, sts = _topology_ready(ctl, "sent", {"mode": "sentinel"}, 3, 3)
    assert ready["status"]["redis"]["mode"] == "sentinel" and ready["status"]["redis"]["source"] == "managed"
    assert ready["status"]["redis"]["sentinelService"] == "sent"
    sentinels = ctl.get("statefulset", "sent-redis-sentinel")
    assert sentinels["spec"]["replicas"] == 3 and sentinels["spec"]["serviceName"] == "sent-redis-sentinel"
    assert ctl.get("service", "sent-redis-sentinel")["spec"]["ports"][0]["port"] == 26379
    assert ctl.get("poddisruptionbudget", "sent-redis-sentinel")["spec"]["maxUnavailable"] == 1
    env = {e["name"]: e for e in ctl.get("deployment", "sent")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["REDIS_SENTINELS"]["value"].split(",")[0] == f"sent-redis-sentinel-0.sent-redis-sentinel.{ctl.ns}.svc:26379"
    assert env["REDIS_SENTINEL_SERVICE"]["value"] == "sent" and "REDIS_URL" not in env
    table = ctl.kubectl("get", "cmodel", "sent", "-o", "wide").stdout
    assert "sentinel" in table and "6/6" in table
    # scaling the replicas is allowed and reaches the StatefulSet and status
    ctl.kubectl("patch", "cmodel", "sent", "--type", "merge", "-p",
                json.dumps({"spec": {"redis": {"sentinel": {"replicas": 3}}}}))
    ctl.wait(lambda: ctl.get("statefulset", "sent-redis")["spec"]["replicas"] == 4, "4 data pods", 30)
    ctl.wait(lambda: ((ctl.cm("sent").get("status") or {}).get("redis") or {}).get("readyNodes") == 7,
             "status.redis.readyNodes 7", 60)
    # switching to external prunes the Sentinels too
    ctl.kubectl("patch", "cmodel", "sent", "--type", "json", "-p", json.dumps(
        [{"op": "add", "path": "/spec/redis", "value": {"external": {"sentinels": ["s-0.s:26379"],
                                                                    "sentinelService": "m"}}}]))
    ctl.wait(lambda: all(ctl.get(k, n) is None for k, n in [("statefulset", "sent-redis-sentinel"),
                                                              ("service", "sent-redis-sentinel"),
                                                              ("poddisruptionbudget", "sent-redis-sentinel"),
                                                              ("statefulset", "sent-redis")]),
             "managed sentinel children pruned", 30)
    status = ctl.wait_ready("sent")["status"]["redis"]
    assert status["mode"] == "sentinel" and status["source"] == "external" and status["sentinelService"] == "m"


def test_cluster_mode_makes_shards_times_replicas_pods(ctl):
    ready, sts = _topology_ready(ctl, "clu", {"mode": "cluster", "cluster": {"shards": 3, "replicasPerShard": 1}},
                                 6, 0)
    assert ready["status"]["redis"]["mode"] == "cluster"
    assert [c["name"] for c in sts["spec"]["template"]["spec"]["containers"]] == ["redis", "cluster-agent"]
    assert ctl.get("statefulset", "clu-redis-sentinel") is None
    policy = ctl.get("networkpolicy", "clu-redis")["spec"]
    assert {p["port"] for p in policy["ingress"][1]["ports"]} == {6379, 16379}
    env = {e["name"]: e for e in ctl.get("deployment", "clu")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert len(env["REDIS_CLUSTER_NODES"]["value"].split(",")) == 6
