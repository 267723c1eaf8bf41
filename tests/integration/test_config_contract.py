"""The operator's service config, loaded by the real service-config parser and the real decorator.

The operator never imports `cachedmodel`; they agree only through this YAML and the env names
REDIS_URL / REDIS_PASSWORD. Here a config rendered by the operator's builders is parsed like the
model image parses $REST_CONFIG, the decorator is built from it, and a prediction goes through a real
redis-server (with a password, as the managed Redis has), so any drift between the two fails.
"""
import copy
import importlib

import pytest
import redis

from cachedmodel.service.config import parse_configuration
from cachedmodel_operator import builders
from cachedmodel_operator.builders.service_config import CONFIG_KEY
from cachedmodel_operator.resource import CachedModel
from cachedmodel.testing.insurance_like_model import sample_input

pytestmark = pytest.mark.integration

BODY = {
    "apiVersion": "cachedmodel.dev/v1alpha1",
    "kind": "CachedModel",
    "metadata": {"name": "contract", "namespace": "ml", "uid": "u"},
    "spec": {"model": {"image": "x", "classPath": "cachedmodel.testing.insurance_like_model.InsuranceLikeModel"}},
}
CACHES = {
    "defaults": {},
    "every-option": {"prefix": "v2", "hashingFields": ["age", "sex", "bmi", "children", "smoker", "region"],
                     "serder": "JSON", "compression": True,
                     "reducedPrecision": {"fields": ["bmi"], "numberOfPlaces": 2}, "ttlSeconds": 600,
                     "socketTimeoutSeconds": 0.5, "socketConnectTimeoutSeconds": 0.5,
                     "localCache": {"size": 100, "ttlSeconds": 5}},
    # every behaviour option of spec.cache (issue 19): the real decorator takes what the operator writes
    "behaviour-options": {"ttlSeconds": 600, "singleFlight": True, "sharedSingleFlight": True, "leaseSeconds": 2,
                          "staleSeconds": 30, "earlyRefreshBeta": 1.0, "maxConnections": 8,
                          "poolTimeoutSeconds": 0.5, "redisInfoIntervalSeconds": 0,
                          "circuitBreaker": {"failures": 4, "resetSeconds": 1.5}, "epoch": 7},
}


def rendered_config(cache: dict):
    body = copy.deepcopy(BODY)
    body["spec"]["cache"] = cache
    config_map = builders.service_config_map(CachedModel.from_body(body))
    return parse_configuration(config_map["data"][CONFIG_KEY], source="operator ConfigMap")


def build_model(configuration):
    """What the service does with a config: import the model and its decorators, wrap it."""
    (model_config,) = configuration.models
    module, _, name = model_config.class_path.rpartition(".")
    model = getattr(importlib.import_module(module), name)(**(model_config.configuration or {}))
    wrapped = model
    for decorator in model_config.decorators or []:
        module, _, name = decorator.class_path.rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        wrapped = cls(**(decorator.configuration or {})).set_model(wrapped)
    return model, wrapped


@pytest.mark.parametrize("cache", sorted(CACHES))
def test_rendered_config_caches_through_real_redis(cache, redis_server_factory, monkeypatch):
    server = redis_server_factory(password="s3cret-from-the-secret")
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{server.port}/0")  # as the operator sets it
    monkeypatch.setenv("REDIS_PASSWORD", "s3cret-from-the-secret")  # from the Secret via secretKeyRef
    model, wrapped = build_model(rendered_config(CACHES[cache]))
    assert wrapped is not model, "the decorator must wrap the model"
    first = wrapped.predict(sample_input())
    second = wrapped.predict(sample_input())
    assert first == second
    assert model.calls == 1, "the second identical request must be a cache hit"
    client = redis.Redis(port=server.port, password="s3cret-from-the-secret")
    try:
        assert client.dbsize() >= 1
        if CACHES[cache].get("ttlSeconds"):
            (key,) = client.keys("*")
            # stale-while-revalidate keeps an entry servable staleSeconds past its TTL
            assert 0 < client.ttl(key) <= 600 + CACHES[cache].get("staleSeconds", 0)
    finally:
        client.close()


def test_behaviour_options_reach_the_decorator(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    model, wrapped = build_model(rendered_config(CACHES["behaviour-options"]))
    options = wrapped.options
    assert (options.shared_single_flight, options.lease_seconds, options.stale_seconds, options.early_refresh_beta,
            options.max_connections, options.pool_timeout, options.redis_info_interval_seconds,
            options.circuit_breaker_failures, options.circuit_breaker_reset_seconds, options.epoch) == \
        (True, 2, 30, 1.0, 8, 0.5, 0, 4, 1.5, 7)


def test_bumping_the_epoch_misses_once_then_hits_and_deletes_nothing(redis_server_factory, monkeypatch):
    """spec.cache.epoch: a new key namespace for the same inputs; the old entries stay until evicted."""
    server = redis_server_factory(password="pw")
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{server.port}/0")
    monkeypatch.setenv("REDIS_PASSWORD", "pw")
    old_model, old = build_model(rendered_config({"epoch": 0}))
    old.predict(sample_input())
    old.predict(sample_input())
    assert old_model.calls == 1
    new_model, new = build_model(rendered_config({"epoch": 1}))
    assert new.cache_key(sample_input()) != old.cache_key(sample_input())
    new.predict(sample_input())
    assert new_model.calls == 1, "the first request of the new epoch is a miss"
    new.predict(sample_input())
    assert new_model.calls == 1, "the second one a hit"
    client = redis.Redis(port=server.port, password="pw")
    try:
        assert client.exists(old.cache_key(sample_input())) == 1, "bumping the epoch deletes nothing"
        assert client.dbsize() == 2
    finally:
        client.close()


def test_wrong_password_degrades_to_the_model(redis_server_factory, monkeypatch):
    """The env names match: with a wrong REDIS_PASSWORD the decorator falls back (it did read it)."""
    server = redis_server_factory(password="right")
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{server.port}/0")
    monkeypatch.setenv("REDIS_PASSWORD", "wrong")
    model, wrapped = build_model(rendered_config({}))
    wrapped.predict(sample_input())
    wrapped.predict(sample_input())
    assert model.calls == 2, "no cache without the right password"


def test_cache_disabled_config_serves_the_bare_model():
    body = copy.deepcopy(BODY)
    body["spec"]["cache"] = {"enabled": False}
    config = parse_configuration(builders.service_config_map(CachedModel.from_body(body))["data"][CONFIG_KEY])
    model, wrapped = build_model(config)
    assert wrapped is model


def test_rendered_redis_conf_and_start_script_run_a_real_redis(tmp_path):
    """The managed Redis container's start script + redis.conf, run with Debian's redis-server
    (paths and port moved under tmp_path): it starts, demands the password, and applies maxmemory/policy."""
    import shutil
    import subprocess

    from cachedmodel_operator.builders.redis import START_SCRIPT
    from cachedmodel.testing.redis_server import free_port, wait_until

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed (make setup installs it)")
    body = copy.deepcopy(BODY)
    body["spec"]["redis"] = {"maxmemory": "64mb", "maxmemoryPolicy": "allkeys-lfu"}
    cm = CachedModel.from_body(body)
    port = free_port()
    (tmp_path / "data").mkdir()
    (tmp_path / "tmp").mkdir()
    conf = builders.redis_conf(cm).replace("port 6379", f"port {port}").replace("dir /data", f"dir {tmp_path}/data")
    (tmp_path / "redis.conf").write_text(conf)
    script = START_SCRIPT.replace("/etc/redis/redis.conf", str(tmp_path / "redis.conf")) \
                         .replace("/tmp/redis.conf", str(tmp_path / "tmp/redis.conf"))
    process = subprocess.Popen(["sh", "-c", script], env={"PATH": "/usr/bin:/bin:/usr/sbin",
                                                          "REDIS_PASSWORD": "pw-from-secret"},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        client = redis.Redis(host="127.0.0.1", port=port, password="pw-from-secret")
        wait_until(client.ping, 10, what="managed-Redis start script serving")
        assert client.config_get("maxmemory")["maxmemory"] == str(64 * 1024 * 1024)
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "allkeys-lfu"
        assert client.config_get("appendonly")["appendonly"] == "no"
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=port).ping()
        assert oct((tmp_path / "tmp/redis.conf").stat().st_mode & 0o777) == "0o600"
        client.close()
    finally:
        process.terminate()
        process.wait(10)


# ------------------------------------------------------------------ topologies (spec.redis.mode, issue 11)

def topology_config(redis: dict):
    """The config and the model container's env the operator renders for spec.redis = `redis`."""
    from cachedmodel_operator.builders.model import model_env

    body = copy.deepcopy(BODY)
    body["spec"]["redis"] = redis
    cm = CachedModel.from_body(body)
    text = builders.service_config_map(cm)["data"][CONFIG_KEY]
    return text, {e["name"]: e for e in model_env(cm)}


def referenced_env(text: str) -> set[str]:
    import re
    return set(re.findall(r"\$\{([A-Z_]+)", text))


@pytest.mark.parametrize("redis", [{"mode": "sentinel"}, {"mode": "cluster"},
                                   {"external": {"sentinels": ["s:26379"], "sentinelService": "m",
                                                 "sentinelPasswordSecretRef": {"name": "s", "key": "k"},
                                                 "passwordSecretRef": {"name": "p", "key": "k"}}},
                                   {"external": {"clusterNodes": ["c:6379"], "passwordSecretRef": {"name": "p", "key": "k"}}}],
                         ids=["sentinel", "cluster", "external-sentinel", "external-cluster"])
def test_every_variable_the_config_reads_is_set_on_the_model_container(redis):
    text, env = topology_config(redis)
    assert referenced_env(text) <= set(env), f"{sorted(referenced_env(text) - set(env))} missing from the pod's env"


def _predict_twice_through(text: str, monkeypatch, environ: dict[str, str]):
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    model, wrapped = build_model(parse_configuration(text, source="operator ConfigMap"))
    assert wrapped is not model
    first = wrapped.predict(sample_input())
    assert wrapped.predict(sample_input()) == first
    assert model.calls == 1, "the second identical request must be a cache hit"
    return wrapped


def test_sentinel_config_caches_through_real_sentinels(monkeypatch):
    """mode sentinel: the rendered options with the env names the operator sets, against a real primary,
    replica and 3 Sentinels that share the password (as the managed Secret makes them)."""
    from cachedmodel.testing.redis_topologies import SentinelDeployment

    text, env = topology_config({"mode": "sentinel"})
    assert {"REDIS_SENTINELS", "REDIS_SENTINEL_SERVICE", "REDIS_PASSWORD", "REDIS_SENTINEL_PASSWORD"} <= set(env)
    with SentinelDeployment(replicas=1, password="s3cret-from-the-secret") as deployment:
        _predict_twice_through(text, monkeypatch, {
            "REDIS_SENTINELS": ",".join(deployment.sentinel_addresses),  # the operator: the Sentinel pods' names
            "REDIS_SENTINEL_SERVICE": deployment.service,
            "REDIS_PASSWORD": "s3cret-from-the-secret", "REDIS_SENTINEL_PASSWORD": "s3cret-from-the-secret"})
        keys = redis.Redis(port=deployment.primary().port, password="s3cret-from-the-secret")
        try:
            assert keys.dbsize() >= 1, "the entry went to the primary the Sentinels name"
        finally:
            keys.close()


def test_cluster_config_caches_through_a_real_cluster(monkeypatch):
    from cachedmodel.testing.redis_topologies import ClusterDeployment

    text, env = topology_config({"mode": "cluster"})
    assert {"REDIS_CLUSTER_NODES", "REDIS_PASSWORD"} <= set(env) and "REDIS_URL" not in env
    with ClusterDeployment(shards=3, replicas_per_shard=1, password="s3cret-from-the-secret") as cluster:
        _predict_twice_through(text, monkeypatch, {"REDIS_CLUSTER_NODES": ",".join(cluster.addresses[:2]),
                                                   "REDIS_PASSWORD": "s3cret-from-the-secret"})
