"""spec.redis.mode sentinel and cluster, and external Sentinel/Cluster endpoints: what the builders make of
them (pod counts, stable DNS names, ports, probes, NetworkPolicy, PDBs, the decorator's options and env)."""
import pytest
import yaml

from cachedmodel_operator import builders
from cachedmodel_operator.builders import redis as redis_builder
from cachedmodel_operator.builders.service_config import CONFIG_KEY
from cachedmodel_operator.status import compute_status
from operator_samples import VARIANTS, cached_model


def kinds(cm):
    return {(o["kind"], o["metadata"]["name"]): o for o in builders.render_all(cm, password="pw")}


def decorator_options(cm):
    config = yaml.safe_load(builders.service_config_map(cm)["data"][CONFIG_KEY])
    return config["models"][0]["decorators"][0]["configuration"]


def model_env(cm):
    container = builders.model_deployment(cm, "sum")["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def env_of(container):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_defaults_are_what_a_user_expects():
    sentinel, cluster = cached_model(redis={"mode": "sentinel"}), cached_model(redis={"mode": "cluster"})
    assert sentinel.redis["sentinel"] == {"replicas": 2} and sentinel.redis_nodes == 3
    assert cluster.redis["cluster"] == {"shards": 3, "replicasPerShard": 1} and cluster.redis_nodes == 6
    assert cached_model().redis["mode"] == "standalone" and cached_model().redis_nodes == 1
    assert cached_model(**VARIANTS["cluster-shaped"]).redis_nodes == 12


def test_standalone_is_unchanged_by_the_modes():
    """No new children, env or conf lines for a standalone CachedModel (an upgrade rolls nothing)."""
    cm = cached_model()
    objs = kinds(cm)
    assert ("Service", "insurance-charges-redis") in objs
    assert not any("sentinel" in name for _, name in objs)
    sts = objs[("StatefulSet", "insurance-charges-redis")]
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["sh", "-c", redis_builder.START_SCRIPT]
    assert [e["name"] for e in container["env"]] == ["REDIS_PASSWORD"]
    assert "cluster" not in builders.redis_conf(cm)
    assert set(model_env(cm)) == {"PORT", "REST_CONFIG", "REDIS_URL", "REDIS_PASSWORD"}


def test_sentinel_children():
    cm = cached_model(redis={"mode": "sentinel"})
    objs = kinds(cm)
    data = objs[("StatefulSet", "insurance-charges-redis")]
    sentinels = objs[("StatefulSet", "insurance-charges-redis-sentinel")]
    assert data["spec"]["replicas"] == 3 and sentinels["spec"]["replicas"] == 3
    assert ("Service", "insurance-charges-redis") not in objs, "a ClusterIP in front of primary and replicas"
    headless = objs[("Service", "insurance-charges-redis-sentinel")]["spec"]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
    assert headless["ports"][0]["port"] == 26379
    assert headless["selector"] == sentinels["spec"]["selector"]["matchLabels"]
    assert objs[("Service", "insurance-charges-redis-headless")]["spec"]["publishNotReadyAddresses"] is True
    (redis,) = data["spec"]["template"]["spec"]["containers"]
    env = env_of(redis)
    assert env["HEADLESS"] == "insurance-charges-redis-headless.ml.svc"
    assert env["FIRST_NODE"] == "insurance-charges-redis-0.insurance-charges-redis-headless.ml.svc"
    assert env["SENTINEL_HOSTS"].split() == [
        f"insurance-charges-redis-sentinel-{i}.insurance-charges-redis-sentinel.ml.svc" for i in range(3)]
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert redis["command"][2] == redis_builder.SENTINEL_DATA_SCRIPT
    assert "startupProbe" in redis, "the start may wait for a failover: liveness must not kill it meanwhile"
    (sentinel,) = sentinels["spec"]["template"]["spec"]["containers"]
    assert sentinel["ports"] == [{"name": "sentinel", "containerPort": 26379, "protocol": "TCP"}]
    assert env_of(sentinel)["QUORUM"] == "2"
    assert "26379" in sentinel["readinessProbe"]["exec"]["command"][2]
    assert sentinel["securityContext"]["readOnlyRootFilesystem"] is True
    pdb = objs[("PodDisruptionBudget", "insurance-charges-redis-sentinel")]["spec"]
    assert pdb["maxUnavailable"] == 1 and pdb["selector"] == sentinels["spec"]["selector"]


def test_sentinel_replicas_and_persistence():
    cm = cached_model(**VARIANTS["sentinel-replicas"])
    sts = builders.redis_statefulset(cm, "x")
    assert sts["spec"]["replicas"] == 5 and sts["spec"]["volumeClaimTemplates"]


def test_cluster_children():
    cm = cached_model(**VARIANTS["cluster-shaped"])
    objs = kinds(cm)
    sts = objs[("StatefulSet", "insurance-charges-redis")]
    assert sts["spec"]["replicas"] == 12
    redis, agent = sts["spec"]["template"]["spec"]["containers"]
    assert [p["containerPort"] for p in redis["ports"]] == [6379, 16379]
    assert "cluster_state:ok" in redis["readinessProbe"]["exec"]["command"][2]
    assert redis["command"][2] == redis_builder.CLUSTER_DATA_SCRIPT
    assert agent["name"] == "cluster-agent" and agent["command"][2] == redis_builder.CLUSTER_AGENT_SCRIPT
    assert env_of(agent)["NODES"] == "12" and env_of(agent)["REPLICAS_PER_SHARD"] == "2"
    assert env_of(agent)["STATEFULSET"] == "insurance-charges-redis"
    assert agent["securityContext"]["readOnlyRootFilesystem"] is True
    conf = builders.redis_conf(cm)
    for line in ("cluster-enabled yes", "cluster-config-file nodes.conf", "cluster-preferred-endpoint-type hostname",
                 "dir /data"):
        assert line in conf.splitlines()
    assert ("Service", "insurance-charges-redis") not in objs
    headless = objs[("Service", "insurance-charges-redis-headless")]["spec"]
    assert {p["port"] for p in headless["ports"]} == {6379, 16379}


@pytest.mark.parametrize("name,client_ports,peer_ports", [
    ("sentinel", [6379, 26379], [6379, 26379]),
    ("cluster", [6379], [6379, 16379]),
])
def test_network_policy_fits_the_mode(name, client_ports, peer_ports):
    cm = cached_model(**VARIANTS[name])
    policy = builders.redis_network_policy(cm)["spec"]
    selected = policy["podSelector"]["matchLabels"]
    pods = [builders.redis_statefulset(cm, "x")["spec"]["template"]["metadata"]["labels"]]
    if name == "sentinel":
        pods.append(builders.sentinel_statefulset(cm)["spec"]["template"]["metadata"]["labels"])
    model_pods = builders.model_deployment(cm, "x")["spec"]["template"]["metadata"]["labels"]
    for labels in pods:
        assert all(labels[k] == v for k, v in selected.items()), "every Redis pod is protected"
    assert not all(model_pods.get(k) == v for k, v in selected.items())
    clients, peers = policy["ingress"]
    assert all(model_pods[k] == v for k, v in clients["from"][0]["podSelector"]["matchLabels"].items())
    assert [p["port"] for p in clients["ports"]] == client_ports
    assert peers["from"][0]["podSelector"]["matchLabels"] == selected, "Redis pods reach each other"
    assert [p["port"] for p in peers["ports"]] == peer_ports


def test_decorator_options_per_topology():
    managed_sentinel = decorator_options(cached_model(redis={"mode": "sentinel"}))
    assert {k: managed_sentinel[k] for k in ("sentinels", "sentinel_service", "sentinel_password", "password")} == {
        "sentinels": "${REDIS_SENTINELS}", "sentinel_service": "${REDIS_SENTINEL_SERVICE}",
        "sentinel_password": "${REDIS_SENTINEL_PASSWORD:-}", "password": "${REDIS_PASSWORD:-}"}
    cluster = decorator_options(cached_model(redis={"mode": "cluster"}))
    assert cluster["cluster_nodes"] == "${REDIS_CLUSTER_NODES}" and cluster["password"] == "${REDIS_PASSWORD:-}"
    for options in (managed_sentinel, cluster):
        assert not {"url", "host", "port", "database", "ssl", "username"} & set(options)
    external = decorator_options(cached_model(**VARIANTS["external-cluster"]))
    assert external["ssl"] is True and external["username"] == "cache-user"
    assert decorator_options(cached_model())["url"] == "${REDIS_URL}"


def test_model_env_carries_the_topology():
    env = model_env(cached_model(redis={"mode": "sentinel"}))
    assert env["REDIS_SENTINELS"] == ",".join(
        f"insurance-charges-redis-sentinel-{i}.insurance-charges-redis-sentinel.ml.svc:26379" for i in range(3))
    assert env["REDIS_SENTINEL_SERVICE"] == "insurance-charges"
    secret = {"secretKeyRef": {"name": "insurance-charges-redis-auth", "key": "password"}}
    assert env["REDIS_PASSWORD"] == secret and env["REDIS_SENTINEL_PASSWORD"] == secret
    assert "REDIS_URL" not in env
    env = model_env(cached_model(redis={"mode": "cluster"}))
    assert env["REDIS_CLUSTER_NODES"].split(",") == [
        f"insurance-charges-redis-{i}.insurance-charges-redis-headless.ml.svc:6379" for i in range(6)]
    assert "REDIS_SENTINELS" not in env and "REDIS_URL" not in env
    env = model_env(cached_model(**VARIANTS["external-sentinel"]))
    assert env["REDIS_SENTINELS"] == "s-0.s:26379,s-1.s:26379,10.0.0.3:26379"
    assert env["REDIS_SENTINEL_SERVICE"] == "mymaster"
    assert env["REDIS_SENTINEL_PASSWORD"] == {"secretKeyRef": {"name": "sent", "key": "pw"}}
    assert env["REDIS_PASSWORD"] == {"secretKeyRef": {"name": "cache", "key": "pw"}}
    env = model_env(cached_model(**VARIANTS["external-cluster"]))
    assert env["REDIS_CLUSTER_NODES"] == "c-0.c:6379,[fd00::1]:6380" and "REDIS_PASSWORD" not in env


def sts(ready, replicas):
    return {"metadata": {"generation": 1}, "spec": {"replicas": replicas},
            "status": {"observedGeneration": 1, "readyReplicas": ready, "currentRevision": "r", "updateRevision": "r"}}


def deployment():
    return {"metadata": {"generation": 1},
            "status": {"observedGeneration": 1, "replicas": 2, "readyReplicas": 2, "updatedReplicas": 2}}


def test_status_reports_mode_and_nodes():
    cm = cached_model(redis={"mode": "sentinel"})
    status = compute_status(cm, deployment(), sts(3, 3), sentinels=sts(2, 3))
    assert status["redis"]["mode"] == "sentinel" and status["redis"]["source"] == "managed"
    assert (status["redis"]["readyNodes"], status["redis"]["desiredNodes"], status["redis"]["nodes"]) == (5, 6, "5/6")
    assert status["redis"]["sentinelService"] == "insurance-charges" and "url" not in status["redis"]
    cache = next(c for c in status["conditions"] if c["type"] == "CacheReady")
    assert cache["status"] == "False" and "2/3 Sentinels ready" in cache["message"]
    status = compute_status(cm, deployment(), sts(3, 3), sentinels=sts(3, 3))
    assert all(c["status"] == "True" for c in status["conditions"])
    assert compute_status(cm, deployment(), sts(3, 3), sentinels=None)["conditions"][2]["reason"] == \
        "StatefulSetMissing"
    cluster = cached_model(redis={"mode": "cluster"})
    status = compute_status(cluster, deployment(), sts(5, 6))
    assert status["redis"]["mode"] == "cluster" and status["redis"]["nodes"] == "5/6"
    assert "5/6 Redis pods ready" in status["conditions"][2]["message"]
    status = compute_status(cluster, deployment(), sts(6, 6))
    assert status["conditions"][2]["status"] == "True" and "3 shards" in status["conditions"][2]["message"]
    for name, mode in (("external-sentinel", "sentinel"), ("external-cluster", "cluster")):
        status = compute_status(cached_model(**VARIANTS[name]), deployment(), None)
        assert status["redis"]["mode"] == mode and status["redis"]["source"] == "external"
