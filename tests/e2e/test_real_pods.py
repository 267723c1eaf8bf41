"""What only real pods can show: traffic, Redis auth, pod hardening, live Redis config, failures and repair.

One operator installed with Helm from the chart (the image of `make images`), watching one namespace;
the example CachedModel (the cluster's local Redis image, 1 replica) applied once and shared by the
steps, which run in file order:

1. predictions through the model Service's ClusterIP from the host: a miss, then a Redis hit (header
   and the pod's /metrics), same body;
2. a second, fresh CachedModel gets 30 predictions (10 inputs, 3 times each): its status.cache, which
   the operator pod read from the model pod's /metrics, says 30 requests, 20 hits, hit ratio 0.6667,
   and `kubectl get cmodel` shows that ratio and the Redis memory;
2b. Redis refuses a client without the password and accepts the one from `<name>-redis-auth`;
3. the model pod runs as uid 10001 on a read-only root filesystem;
4. spec.redis.maxmemory / maxmemoryPolicy reach the live Redis (CONFIG GET) after the roll;
5. a deleted Redis pod costs no failed prediction, and hits come back (seconds measured);
6. a deleted model pod is replaced and the CachedModel is Ready again;
7. a bad hashingFields crashes the model for real and ModelReady carries the decorator's message;
8. NetworkPolicy: a pod without the model's labels cannot reach Redis, a model pod can, the same pod
   reaches an uncovered Service, and given the model's labels it reaches Redis too;
9. deleting the CachedModels and uninstalling leaves nothing.

All traffic goes to the bridge's pod and Service addresses (checked with cluster.network.owns).
"""
from __future__ import annotations

import base64
import contextlib
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.helpers import (MODEL_IMAGE, bridge_target, condition, describe,
                               example_cachedmodel, get_json, items, managed_children, redis_hits, wait_for)
from tests.e2e.operator_runner import DeployedOperator, installed_operator, pod_names
from cachedmodel.testing.processes import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.needs_real_pods]

READY_TIMEOUT = 420
PREDICTION = {"age": 37, "sex": "male", "bmi": 27.3, "children": 2, "smoker": False, "region": "southwest"}
PREDICT_PATH = "/api/models/insurance_charges_model/prediction"
MODEL_UID = 10001
# Connect from inside a pod; prints "connected" or "failed: <error>" (always exit 0: the text decides).
CONNECT = ("import socket, sys\n"
           "try:\n"
           "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()\n"
           "    print('connected')\n"
           "except OSError as error:\n"
           "    print('failed:', type(error).__name__, error)\n")


@dataclass
class Stack:
    cluster: object
    release: str
    namespace: str    # the operator's
    models: str       # the CachedModels'
    workdir: Path
    operator: DeployedOperator | None = None
    name: str = ""
    service_ip: str = ""

    @property
    def fullname(self) -> str:
        return f"{self.release}-cachedmodel-operator"

    def kubectl(self, *args, **kwargs):
        return self.cluster.kubectl(*args, **kwargs)

    def cachedmodel(self, name: str | None = None) -> dict | None:
        return get_json(self.cluster, "cachedmodel", name or self.name, "-n", self.models)

    def ready(self, name: str | None = None) -> bool:
        found = self.cachedmodel(name)
        return bool(found) and (found.get("status") or {}).get("observedGeneration") == \
            found["metadata"]["generation"] and condition(found, "Ready").get("status") == "True"

    def wait(self, predicate, timeout: float, what: str):
        self.operator.wait(predicate, timeout, what, diagnose=lambda: describe(self.cluster, self.models))

    def pods(self, component: str, name: str | None = None) -> list[dict]:
        """Live (not deleting) pods of a CachedModel's component: "model" or "cache"."""
        selector = f"app.kubernetes.io/instance={name or self.name},app.kubernetes.io/component={component}"
        return [p for p in items(self.cluster, "pods", "-n", self.models, "-l", selector)
                if not p["metadata"].get("deletionTimestamp")]

    def ready_pods(self, component: str) -> list[dict]:
        return [p for p in self.pods(component) if condition(p, "Ready").get("status") == "True"]

    def exec(self, target: str, container: str, *command: str, input: str | None = None, check: bool = True):
        args = ["exec", "-n", self.models, *(["-i"] if input is not None else []), target, "-c", container, "--",
                *command]
        return self.kubectl(*args, input=input, check=check, timeout=60)

    def redis_cli(self, *command: str, password: str | None) -> str:
        """redis-cli inside the Redis pod (no network policy in between); the password goes over stdin."""
        script = 'read -r p; REDISCLI_AUTH="$p" redis-cli "$@" 2>&1' if password is not None \
            else 'redis-cli "$@" 2>&1'
        return self.exec(f"statefulset/{self.name}-redis", "redis", "sh", "-c", script, "redis-cli", *command,
                         input=f"{password}\n" if password is not None else None).stdout

    def password(self) -> str:
        secret = get_json(self.cluster, "secret", f"{self.name}-redis-auth", "-n", self.models)
        return base64.b64decode(secret["data"]["password"]).decode()

    def http(self) -> httpx.Client:
        base = f"http://{bridge_target(self.cluster, self.service_ip)}:8000"
        return httpx.Client(base_url=base, timeout=10, trust_env=False)


@pytest.fixture(scope="module")
def stack(kube_cluster, tmp_path_factory):
    if getattr(kube_cluster, "network", None) is None:
        pytest.skip("needs the local real-pods cluster: the host sends to its bridge's ClusterIPs")
    suffix = uuid.uuid4().hex[:6]
    st = Stack(cluster=kube_cluster, release=f"pods{suffix}", namespace=f"cm-pods-op-{suffix}",
               models=f"cm-pods-models-{suffix}", workdir=tmp_path_factory.mktemp("real-pods"))
    with installed_operator(st):
        try:
            body = example_cachedmodel(kube_cluster)
            assert body["spec"]["redis"]["image"] == kube_cluster.redis_image
            assert body["spec"]["model"]["replicas"] == 1, "one model pod: /metrics comes from the pod that answered"
            st.name = body["metadata"]["name"]
            kube_cluster.kubectl("apply", "-n", st.models, "-f", "-", input=json.dumps(body))
            st.wait(st.ready, READY_TIMEOUT, f"CachedModel {st.name} Ready")
            st.service_ip = get_json(kube_cluster, "service", st.name, "-n", st.models)["spec"]["clusterIP"]
            yield st
        finally:
            kube_cluster.kubectl("delete", "pod", "-n", st.models, "-l", "app.kubernetes.io/name=netpol-probe",
                                 "--grace-period=0", "--ignore-not-found", check=False)


def _serving(http: httpx.Client) -> bool:
    try:
        return http.get("/api/health/ready").status_code == 200
    except httpx.HTTPError:
        return False


def test_second_identical_prediction_through_the_cluster_ip_is_a_redis_hit(stack: Stack):
    assert stack.cluster.network.owns(stack.service_ip)
    with stack.http() as http:
        wait_for(lambda: _serving(http), 60, f"model Service {stack.service_ip}:8000 answering from the host")
        hits_before = redis_hits(http.get("/metrics").text)
        first = http.post(PREDICT_PATH, json=PREDICTION)
        assert first.status_code == 200, first.text
        assert first.headers.get("x-cache") == "miss"
        second = http.post(PREDICT_PATH, json=PREDICTION)
        assert second.status_code == 200, second.text
        assert second.headers.get("x-cache") == "hit"
        assert second.content == first.content and isinstance(first.json()["charges"], float)
        hits_after = redis_hits(http.get("/metrics").text)
        assert hits_after == hits_before + 1, f"redis hits {hits_before} -> {hits_after}"
    assert len(stack.ready_pods("model")) == 1, "one model pod answered both (and /metrics)"


def test_status_cache_counts_exactly_the_predictions_sent(stack: Stack, capsys):
    """A CachedModel of its own (nothing else talks to its pod): 10 inputs sent 3 times each, one after the
    other, make 10 misses and 20 hits; status.cache (the operator pod reading the model pod's /metrics)
    must say exactly that, and the printer columns must show it."""
    body = example_cachedmodel(stack.cluster)
    body["metadata"]["name"] = name = "insurance-ratio"
    stack.kubectl("apply", "-n", stack.models, "-f", "-", input=json.dumps(body))
    try:
        stack.wait(lambda: stack.ready(name), READY_TIMEOUT, f"CachedModel {name} Ready")
        service_ip = get_json(stack.cluster, "service", name, "-n", stack.models)["spec"]["clusterIP"]
        seen: dict[str, int] = {}
        started = time.monotonic()
        with httpx.Client(base_url=f"http://{bridge_target(stack.cluster, service_ip)}:8000", timeout=10,
                          trust_env=False) as http:
            wait_for(lambda: _serving(http), 60, f"model Service {service_ip}:8000 answering from the host")
            for _ in range(3):
                for age in range(20, 30):
                    response = http.post(PREDICT_PATH, json={**PREDICTION, "age": age})
                    assert response.status_code == 200, response.text
                    seen[response.headers.get("x-cache")] = seen.get(response.headers.get("x-cache"), 0) + 1
        assert seen == {"miss": 10, "hit": 20}, seen

        def cache() -> dict:
            return ((stack.cachedmodel(name) or {}).get("status") or {}).get("cache") or {}

        stack.wait(lambda: cache().get("requests") == 30 and cache().get("keys") == 10, 150,
                   "status.cache with the 30 predictions and the 10 keys")
        figures = cache()
        with capsys.disabled():
            print(f"\n[real pods] status.cache after {time.monotonic() - started:.1f} s: {figures}")
        assert figures["hits"] == 20 and figures["misses"] == 10 and figures["bypasses"] == 0
        assert figures["hitRatio"] == round(20 / 30, 4) == 0.6667
        assert figures["scrapedPods"] == "1/1" and figures["stale"] is False and "scrapeErrors" not in figures
        assert figures["maxMemoryBytes"] == 64 * 2**20 and 0 < figures["usedMemoryBytes"] < figures["maxMemoryBytes"]
        assert figures["memory"].endswith("/64Mi") and figures["evictedKeys"] == 0
        table = stack.kubectl("get", "cmodel", name, "-n", stack.models).stdout.splitlines()
        assert "RATIO" in table[0].split() and "MEMORY" in table[0].split(), table
        assert "0.6667" in table[1] and figures["memory"] in table[1], table
    finally:
        stack.kubectl("delete", "cachedmodel", name, "-n", stack.models, "--ignore-not-found", "--timeout=120s",
                      timeout=150)
    stack.wait(lambda: not [c for c in managed_children(stack.cluster, stack.models) if name in c],
               120, f"children of {name} gone")


def test_redis_refuses_clients_without_the_secret_password(stack: Stack):
    anonymous = stack.redis_cli("PING", password=None)
    assert "NOAUTH" in anonymous and "Authentication required" in anonymous, anonymous
    assert "PONG" not in anonymous
    wrong = stack.redis_cli("PING", password="not-the-password")
    assert "WRONGPASS" in wrong or "invalid password" in wrong, wrong
    password = stack.password()
    assert len(password) >= 16
    assert stack.redis_cli("PING", password=password).strip() == "PONG"
    # the entry the first step stored is there, under the password
    assert int(stack.redis_cli("DBSIZE", password=password).split()[-1]) >= 1


def test_model_pod_runs_as_non_root_on_a_read_only_root_filesystem(stack: Stack):
    target = f"deployment/{stack.name}"
    assert stack.exec(target, "model", "id", "-u").stdout.strip() == str(MODEL_UID)
    status = stack.exec(target, "model", "cat", "/proc/1/status").stdout
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1:] == [str(MODEL_UID)] * 4, uid_line
    for directory in ("", "/etc", "/opt/venv"):  # / itself, and directories the image has
        result = stack.exec(target, "model", "sh", "-c", f"echo x > {directory}/cachedmodel-probe", check=False)
        assert result.returncode != 0, f"{directory or '/'} was writable"
        assert "Read-only file system" in result.stderr, result.stderr
    # the one writable place is the emptyDir on /tmp
    assert stack.exec(target, "model", "sh", "-c", "echo x > /tmp/probe && cat /tmp/probe && rm /tmp/probe"
                      ).stdout.strip() == "x"


def _config_get(stack: Stack, key: str) -> str:
    lines = stack.redis_cli("CONFIG", "GET", key, password=stack.password()).split()
    assert lines and lines[0] == key, lines
    return lines[1]


def test_maxmemory_and_policy_changes_reach_the_live_redis(stack: Stack):
    assert _config_get(stack, "maxmemory") == str(64 * 2**20)
    assert _config_get(stack, "maxmemory-policy") == "allkeys-lru"
    old_pod = stack.ready_pods("cache")[0]["metadata"]["uid"]
    stack.kubectl("patch", "cachedmodel", stack.name, "-n", stack.models, "--type=merge", "-p",
                  json.dumps({"spec": {"redis": {"maxmemory": "48mb", "maxmemoryPolicy": "allkeys-lfu"}}}))

    def rolled() -> bool:
        pods = stack.ready_pods("cache")
        if len(pods) != 1 or pods[0]["metadata"]["uid"] == old_pod:
            return False
        return (_config_get(stack, "maxmemory") == str(48 * 2**20)
                and _config_get(stack, "maxmemory-policy") == "allkeys-lfu")

    stack.wait(rolled, 240, "a new Redis pod running maxmemory 48mb, allkeys-lfu")
    stack.wait(stack.ready, 240, "CachedModel Ready after the Redis roll")


def test_deleted_redis_pod_costs_no_failed_prediction_and_hits_resume(stack: Stack, capsys):
    stack.wait(stack.ready, 120, "CachedModel Ready before the Redis pod is deleted")
    old = stack.ready_pods("cache")[0]["metadata"]
    statuses: dict[int | str, int] = {}
    first_hit_after: float | None = None
    missed_since_delete = False
    with stack.http() as http:
        waited = time.monotonic()
        wait_for(lambda: http.post(PREDICT_PATH, json=PREDICTION).headers.get("x-cache") == "hit", 60,
                 "a Redis hit before the deletion", diagnose=lambda: _cache_metrics(http) + _model_log(stack))
        with capsys.disabled():
            print(f"\n[real pods] hits before deletion after {time.monotonic() - waited:.1f} s")
        deleted = time.monotonic()
        stack.kubectl("delete", "pod", old["name"], "-n", stack.models, "--wait=false")

        def hit_again() -> bool:
            """One prediction every poll: any non-200 (or transport error) counts as a failure."""
            nonlocal missed_since_delete, first_hit_after
            try:
                response = http.post(PREDICT_PATH, json=PREDICTION)
            except httpx.HTTPError as error:
                statuses[type(error).__name__] = statuses.get(type(error).__name__, 0) + 1
                return False
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            cache = response.headers.get("x-cache")
            if response.status_code == 200 and cache != "hit":
                missed_since_delete = True
            # the new Redis starts empty (no persistence): a hit after a miss is the new pod's
            elif cache == "hit" and missed_since_delete:
                first_hit_after = time.monotonic() - deleted
            return first_hit_after is not None

        try:
            wait_until(hit_again, 90, interval=0.2, what="a Redis hit after deleting the Redis pod")
        except TimeoutError:
            pass  # reported by the assertions below, with the counts
    sent = sum(statuses.values())
    failed = sent - statuses.get(200, 0)
    with capsys.disabled():
        print(f"\n[real pods] Redis pod deleted: {sent} predictions, {failed} not 200 ({statuses}); "
              f"first hit after {first_hit_after if first_hit_after is None else round(first_hit_after, 1)} s")
    assert failed == 0, f"predictions failed while Redis was gone: {statuses}"
    assert missed_since_delete, "the stream never saw Redis gone"
    assert first_hit_after is not None, f"no Redis hit within 90 s of deleting the Redis pod ({statuses})"
    new = stack.ready_pods("cache")
    assert len(new) == 1 and new[0]["metadata"]["uid"] != old["uid"]
    stack.wait(stack.ready, 120, "CachedModel Ready after the Redis pod came back")


def _cache_metrics(http: httpx.Client) -> str:
    return "\n".join(line for line in http.get("/metrics").text.splitlines()
                     if line.startswith("cachedmodel_") and not line.startswith("cachedmodel_cache_latency"))


def _model_log(stack: Stack) -> str:
    result = stack.kubectl("logs", f"deployment/{stack.name}", "-n", stack.models, "--tail=40", check=False)
    return "\n--- model log ---\n" + result.stdout + result.stderr


def test_deleted_model_pod_is_replaced_and_the_cachedmodel_is_ready_again(stack: Stack):
    stack.wait(stack.ready, 120, "CachedModel Ready before the model pod is deleted")
    old = stack.ready_pods("model")[0]["metadata"]["name"]
    stack.kubectl("delete", "pod", old, "-n", stack.models, "--wait=false")
    selector = f"app.kubernetes.io/instance={stack.name},app.kubernetes.io/component=model"
    stack.wait(lambda: old not in pod_names(stack.cluster, stack.models, selector)
               and [p["metadata"]["name"] for p in stack.ready_pods("model")] not in ([], [old]),
               READY_TIMEOUT, f"a new Ready model pod replacing {old}")
    stack.wait(stack.ready, READY_TIMEOUT, "CachedModel Ready with the new model pod")
    status = stack.cachedmodel()["status"]
    assert status["replicas"] == {"ready": 1, "desired": 1, "current": 1}
    with stack.http() as http:
        wait_for(lambda: _serving(http) and http.post(PREDICT_PATH, json=PREDICTION).status_code == 200, 60,
                 "predictions from the new model pod")


def test_bad_hashing_field_crashes_the_model_and_model_ready_names_it(stack: Stack):
    bad = example_cachedmodel(stack.cluster)
    bad["metadata"]["name"] = name = "insurance-bad-fields"
    bad["spec"]["cache"]["hashingFields"] = ["age", "agee"]
    stack.kubectl("apply", "-n", stack.models, "-f", "-", input=json.dumps(bad))
    expected = "option 'hashing_fields': 'agee' is not an input field"
    try:
        def named() -> bool:
            message = condition(stack.cachedmodel(name), "ModelReady").get("message", "")
            return expected in message and "exit code 3" in message

        stack.wait(named, READY_TIMEOUT, f"ModelReady of {name} naming the bad field from a real crash")
        found = stack.cachedmodel(name)
        model_ready = condition(found, "ModelReady")
        assert model_ready["status"] == "False"
        assert model_ready["reason"] in ("CrashLoopBackOff", "ContainerFailed", "ContainerRestarted", "Error")
        assert condition(found, "Ready")["status"] == "False"
        # the pod itself tells the same: a container that exited with code 3 saying so
        pods = stack.pods("model", name)
        assert pods
        terminations = [s.get("lastState", {}).get("terminated") or s.get("state", {}).get("terminated") or {}
                        for p in pods for s in p["status"].get("containerStatuses") or []]
        assert any(t.get("exitCode") == 3 and expected in (t.get("message") or "") for t in terminations), \
            terminations
    finally:
        stack.kubectl("delete", "cachedmodel", name, "-n", stack.models, "--ignore-not-found", "--timeout=120s",
                      timeout=150)
    stack.wait(lambda: not [c for c in managed_children(stack.cluster, stack.models) if name in c],
               120, f"children of {name} gone")


@contextlib.contextmanager
def probe_pod(stack: Stack, probe: str = "netpol-probe"):
    """A Ready pod of the model image without the model's labels (what a NetworkPolicy must keep out of
    Redis), deleted afterwards."""
    try:
        stack.kubectl("apply", "-n", stack.models, "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": probe, "labels": {"app.kubernetes.io/name": probe}},
            "spec": {"restartPolicy": "Never", "automountServiceAccountToken": False, "enableServiceLinks": False,
                     "terminationGracePeriodSeconds": 1,
                     "securityContext": {"runAsNonRoot": True, "runAsUser": MODEL_UID,
                                         "seccompProfile": {"type": "RuntimeDefault"}},
                     "containers": [{"name": "probe", "image": MODEL_IMAGE, "imagePullPolicy": "IfNotPresent",
                                     "command": ["python", "-c", "import time; time.sleep(600)"],
                                     "securityContext": {"allowPrivilegeEscalation": False,
                                                         "readOnlyRootFilesystem": True,
                                                         "capabilities": {"drop": ["ALL"]}}}]}}))
        stack.kubectl("wait", "-n", stack.models, f"pod/{probe}", "--for=condition=Ready", "--timeout=120s",
                      timeout=150)
        yield probe
    finally:
        stack.kubectl("delete", "pod", probe, "-n", stack.models, "--grace-period=0", "--force",
                      "--ignore-not-found", "--wait=true", "--timeout=60s", check=False, timeout=90)


def _connect(stack: Stack, pod: str, container: str, address: str, port: int) -> str:
    bridge_target(stack.cluster, address)
    return stack.exec(pod, container, "python", "-c", CONNECT, address, str(port)).stdout.strip()


def _enforcer_broken(stack: Stack) -> str:
    """Why kube-network-policies enforces nothing, when its log says so ("" otherwise). Seen on kernels
    without CONFIG_NFT_QUEUE: every nftables sync fails (its rules hand new connections to an nfqueue
    with the nft `queue` statement), no rule is installed, and all traffic passes."""
    log = stack.kubectl("logs", "-n", "kube-system", "daemonset/kube-network-policies", "--tail=400",
                        check=False).stdout
    if '"syncing nftables rules" error' not in log:
        return ""
    error = log.split('"syncing nftables rules" error', 1)[1].splitlines()[1:2]
    why = f"kube-network-policies cannot install its nftables rules ({' '.join(e.strip() for e in error)})"
    config = Path("/proc/config.gz")
    if config.exists():
        import gzip

        if "# CONFIG_NFT_QUEUE is not set" in gzip.decompress(config.read_bytes()).decode(errors="replace"):
            why += "; this kernel has no nft queue statement (CONFIG_NFT_QUEUE is not set)"
    return why


def test_network_policy_lets_only_model_pods_reach_redis(stack: Stack):
    redis_ip = get_json(stack.cluster, "service", f"{stack.name}-redis", "-n", stack.models)["spec"]["clusterIP"]
    redis_pod_ip = stack.ready_pods("cache")[0]["status"]["podIP"]
    for address in (redis_ip, redis_pod_ip, stack.service_ip):
        assert stack.cluster.network.owns(address), address
    policy = get_json(stack.cluster, "networkpolicy", f"{stack.name}-redis", "-n", stack.models)
    assert policy, "the operator made no NetworkPolicy"
    with probe_pod(stack) as probe:
        model_pod = f"deployment/{stack.name}"
        # a model pod reaches Redis (its Service and its pod address) ...
        wait_for(lambda: _connect(stack, model_pod, "model", redis_ip, 6379) == "connected", 30,
                 "model pod -> Redis Service")
        assert _connect(stack, model_pod, "model", redis_pod_ip, 6379) == "connected"
        # ... the probe reaches the model Service, which no policy covers: its network works ...
        wait_for(lambda: _connect(stack, f"pod/{probe}", "probe", stack.service_ip, 8000) == "connected", 30,
                 "probe pod -> model Service (no policy)")
        # ... and yet not Redis, by Service or pod address
        for address in (redis_ip, redis_pod_ip):
            outcome = _connect(stack, f"pod/{probe}", "probe", address, 6379)
            assert outcome.startswith("failed:"), (f"probe pod reached Redis at {address}: {outcome}; "
                                                   f"network-policy agent: {_enforcer_broken(stack)}")
        # the labels alone decide: the same pod, given the model's selector labels, gets through
        stack.kubectl("label", "pod", probe, "-n", stack.models, "--overwrite",
                      "app.kubernetes.io/name=model-service", f"app.kubernetes.io/instance={stack.name}",
                      "app.kubernetes.io/component=model")
        wait_for(lambda: _connect(stack, f"pod/{probe}", "probe", redis_ip, 6379) == "connected", 60,
                 "probe pod with the model's labels -> Redis")


def test_deleting_the_cachedmodels_and_uninstalling_leaves_nothing(stack: Stack):
    cluster = stack.cluster
    assert managed_children(cluster, stack.models)
    stack.kubectl("delete", "cachedmodels", "--all", "-n", stack.models, "--timeout=120s", timeout=150)
    wait_for(lambda: not managed_children(cluster, stack.models), 120, "children of the CachedModels gone",
             diagnose=lambda: describe(cluster, stack.models))
    cluster.helm("uninstall", stack.release, "-n", stack.namespace, "--wait", "--timeout", "3m", timeout=240)
    stack.operator.stop()
    # docs/deploying.md's last step: the `helm test` pod, if one ran (none here: the command must still succeed)
    stack.kubectl("delete", "pod", "-n", stack.namespace, "-l", "app.kubernetes.io/component=test",
                  "--timeout=60s", timeout=90)
    for namespace in (stack.namespace, stack.models):
        wait_for(lambda: not _leftovers(cluster, namespace), 180, f"namespace {namespace} empty",
                 diagnose=lambda: describe(cluster, namespace))
    selector = f"app.kubernetes.io/instance={stack.release}"
    assert not cluster.kubectl("get", "clusterroles,clusterrolebindings", "-l", selector, "-o",
                               "name").stdout.strip()


def _leftovers(cluster, namespace: str) -> list[str]:
    """Every object of the usual kinds, but what each namespace has anyway (root CA, default account)."""
    out = cluster.kubectl("get", "all,configmaps,secrets,serviceaccounts,roles,rolebindings,networkpolicies,"
                          "poddisruptionbudgets,persistentvolumeclaims", "-n", namespace, "-o", "name").stdout
    return [line for line in out.split() if line not in ("configmap/kube-root-ca.crt", "serviceaccount/default")]
