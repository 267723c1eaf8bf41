"""spec.redis.mode sentinel and cluster on real pods (issue 11): each topology comes up from nothing (the
Sentinels elect pod -0, the cluster-agent of pod -0 creates the cluster), serves cached predictions through
the model Service, and survives deleting its primary with 0 failed predictions: the Sentinels (or the
cluster) fail over to a replica that holds the entries, the deleted pod comes back with a new IP as a
replica of the new primary, hits go on. The NetworkPolicy is enforced for real: the model pod reaches the
Redis and Sentinel ports, a pod without the model's labels does not (while the Redis pods reach each other, or
neither failover would work).

One operator installed with Helm from the chart (the image of `make images`), watching one namespace; each
test applies its own CachedModel (the cluster's local Redis image) and deletes it at the end. All traffic goes
to the bridge's Service addresses (checked with cluster.network.owns).
"""
from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from tests.e2e.helpers import bridge_target, condition, example_cachedmodel, get_json, items, wait_for
from tests.e2e.operator_runner import installed_operator
from tests.e2e.test_real_pods import CONNECT, PREDICT_PATH, PREDICTION, READY_TIMEOUT, Stack, probe_pod
from cachedmodel.testing.processes import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.needs_real_pods]

FAILOVER_TIMEOUT = 180


@pytest.fixture(scope="module")
def stack(kube_cluster, tmp_path_factory):
    if getattr(kube_cluster, "network", None) is None:
        pytest.skip("needs the local real-pods cluster: the host sends to its bridge's ClusterIPs")
    suffix = uuid.uuid4().hex[:6]
    st = Stack(cluster=kube_cluster, release=f"topo{suffix}", namespace=f"cm-topo-op-{suffix}",
               models=f"cm-topo-models-{suffix}", workdir=tmp_path_factory.mktemp("real-pods-topologies"))
    with installed_operator(st):
        yield st


def deploy(stack: Stack, name: str, redis: dict) -> str:
    """Apply the example CachedModel as `name` with `redis` merged into spec.redis; its Service IP once Ready."""
    body = example_cachedmodel(stack.cluster)
    body["metadata"]["name"] = name
    body["spec"]["redis"].update(redis)
    stack.kubectl("apply", "-n", stack.models, "-f", "-", input=json.dumps(body))
    stack.wait(lambda: stack.ready(name), READY_TIMEOUT, f"CachedModel {name} ({redis}) Ready")
    ip = get_json(stack.cluster, "service", name, "-n", stack.models)["spec"]["clusterIP"]
    return bridge_target(stack.cluster, ip)


def redis_cli(stack: Stack, pod: str, container: str, *command: str) -> str:
    """redis-cli in a Redis pod, authenticated with the pod's own REDIS_PASSWORD (from the Secret); "" while the
    pod is away (it is being replaced)."""
    script = 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli --raw "$@" 2>&1'
    result = stack.exec(pod, container, "sh", "-c", script, "redis-cli", *command, check=False)
    return result.stdout if result.returncode == 0 else ""


def role(stack: Stack, pod: str) -> str:
    return (redis_cli(stack, pod, "redis", "role").splitlines() or [""])[0]


def pod_uids(stack: Stack, name: str) -> dict[str, str]:
    return {p["metadata"]["name"]: p["metadata"]["uid"]
            for p in items(stack.cluster, "pods", "-n", stack.models, "-l", f"app.kubernetes.io/instance={name}")}


def all_ready(stack: Stack, name: str, count: int) -> bool:
    pods = items(stack.cluster, "pods", "-n", stack.models, "-l",
                 f"app.kubernetes.io/instance={name},app.kubernetes.io/name=redis")
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    return len(live) == count and all(condition(p, "Ready").get("status") == "True" for p in live)


def predict_hit(http: httpx.Client, timeout: float = 60) -> None:
    wait_for(lambda: http.post(PREDICT_PATH, json=PREDICTION).headers.get("x-cache") == "hit", timeout,
             "a Redis hit (miss first, then the stored entry)")


def pods_report(stack: Stack, name: str) -> str:
    """What a failed failover prints: the Redis pods (phase, readiness, restarts) and the tail of each one's
    logs, Sentinels included, so the step that never came is visible."""
    lines = []
    for pod in items(stack.cluster, "pods", "-n", stack.models, "-l",
                     f"app.kubernetes.io/instance={name},app.kubernetes.io/name=redis"):
        meta, status = pod["metadata"], pod.get("status") or {}
        restarts = [c.get("restartCount", 0) for c in status.get("containerStatuses") or []]
        lines.append(f"--- {meta['name']} uid={meta['uid'][:8]} phase={status.get('phase')} "
                     f"ready={condition(pod, 'Ready').get('status')} restarts={restarts} "
                     f"deleting={bool(meta.get('deletionTimestamp'))}")
        for container in [c["name"] for c in pod["spec"]["containers"]]:
            logs = stack.kubectl("logs", "-n", stack.models, meta["name"], "-c", container, "--tail=25",
                                 check=False)
            lines.append(f"[{container}]\n{logs.stdout}{logs.stderr}")
    return "\n".join(lines)


def delete_and_stream(stack: Stack, http: httpx.Client, pod: str, settled, capsys, what: str,
                      report=lambda: "") -> dict:
    """Delete `pod`, then send one prediction per poll until a hit arrives after `settled()` holds; returns the
    status counts (transport errors by name). Fails on any prediction that is not a 200; a timeout prints
    `report()`."""
    statuses: dict[int | str, int] = {}
    deleted = time.monotonic()
    stack.kubectl("delete", "pod", pod, "-n", stack.models, "--wait=false")
    times: dict[str, float] = {}

    def hit_after_settling() -> bool:
        try:
            response = http.post(PREDICT_PATH, json=PREDICTION)
        except httpx.HTTPError as error:
            statuses[type(error).__name__] = statuses.get(type(error).__name__, 0) + 1
            return False
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        if "settled" not in times and settled():
            times["settled"] = time.monotonic() - deleted
        if "settled" in times and response.headers.get("x-cache") == "hit":
            times["hit"] = time.monotonic() - deleted
            return True
        return False

    try:
        wait_until(hit_after_settling, FAILOVER_TIMEOUT, interval=0.3, what=what)
    except TimeoutError:
        pass  # reported below with the counts
    sent = sum(statuses.values())
    failed = sent - statuses.get(200, 0)
    with capsys.disabled():
        print(f"\n[real pods] {pod} deleted: {sent} predictions, {failed} not 200 ({statuses}); "
              f"settled after {times.get('settled', -1):.1f} s, hit after {times.get('hit', -1):.1f} s")
    assert failed == 0, f"predictions failed while {pod} was replaced: {statuses}"
    assert "hit" in times, f"{what}: not within {FAILOVER_TIMEOUT} s ({statuses}, {times})\n{report()}"
    return statuses


def connect(stack: Stack, target: str, container: str, address: str, port: int) -> str:
    bridge_target(stack.cluster, address)
    result = stack.exec(target, container, "python", "-c", CONNECT, address, str(port), check=False)
    return result.stdout.strip()


def check_network_policy(stack: Stack, name: str, ports: dict[str, int]) -> None:
    """The model pod reaches every Redis pod's client port (`ports`: pod -> port); a pod without the model's
    labels reaches none of them."""
    with probe_pod(stack) as probe:
        for pod, port in ports.items():
            address = get_json(stack.cluster, "pod", pod, "-n", stack.models)["status"]["podIP"]
            wait_for(lambda: connect(stack, f"deployment/{name}", "model", address, port) == "connected", 30,
                     f"model pod -> {pod}:{port}")
            outcome = connect(stack, f"pod/{probe}", "probe", address, port)
            assert outcome.startswith("failed:"), f"a pod without the model's labels reached {pod}:{port}: {outcome}"


def test_sentinel_mode_serves_hits_and_survives_deleting_its_primary(stack: Stack, capsys):
    name = "sent"
    ip = deploy(stack, name, {"mode": "sentinel", "sentinel": {"replicas": 2}})
    status = stack.cachedmodel(name)["status"]["redis"]
    assert (status["mode"], status["readyNodes"], status["desiredNodes"]) == ("sentinel", 6, 6), status

    def primary() -> str:
        for index in range(3):  # the first Sentinel that answers
            answer = redis_cli(stack, f"{name}-redis-sentinel-{index}", "sentinel", "-p", "26379", "sentinel",
                               "get-master-addr-by-name", name).split()
            if len(answer) == 2:
                return answer[0].split(".")[0]
        return ""

    first = primary()
    assert first == f"{name}-redis-0", "a fresh deploy makes pod -0 the primary"
    assert [role(stack, f"{name}-redis-{i}") for i in range(3)] == ["master", "slave", "slave"]
    with httpx.Client(base_url=f"http://{ip}:8000", timeout=10, trust_env=False) as http:
        predict_hit(http)
        # replication is asynchronous (and a first sync waits repl-diskless-sync-delay, 5 s)
        stack.wait(lambda: int(redis_cli(stack, f"{name}-redis-1", "redis", "dbsize").strip() or 0) >= 1, 60,
                   "the replicas holding the entries the primary stored")
        old_uid = pod_uids(stack, name)[first]

        def state() -> dict:
            return {"primary": primary(), "replaced": pod_uids(stack, name).get(first) not in (None, old_uid),
                    "all ready": all_ready(stack, name, 6), f"role of {first}": role(stack, first)}

        def settled() -> bool:
            now = state()
            return (bool(now["primary"]) and now["primary"] != first and now["replaced"] and now["all ready"]
                    and now[f"role of {first}"] == "slave")

        delete_and_stream(stack, http, first, settled, capsys, "failover done, old primary back as a replica, a hit",
                          report=lambda: f"{state()}\n{pods_report(stack, name)}")
    stack.wait(lambda: "master_link_status:up" in redis_cli(stack, first, "redis", "info", "replication"), 60,
               f"{first} replicating from the new primary")
    stack.wait(lambda: stack.ready(name), 120, f"CachedModel {name} Ready after the failover")
    check_network_policy(stack, name, {f"{name}-redis-1": 6379, f"{name}-redis-sentinel-0": 26379})
    stack.kubectl("delete", "cachedmodel", name, "-n", stack.models, "--wait=true", timeout=120)


def test_cluster_mode_serves_hits_and_survives_deleting_a_primary(stack: Stack, capsys):
    name = "clu"
    ip = deploy(stack, name, {"mode": "cluster", "cluster": {"shards": 3, "replicasPerShard": 1}})
    status = stack.cachedmodel(name)["status"]["redis"]
    assert (status["mode"], status["readyNodes"], status["desiredNodes"]) == ("cluster", 6, 6), status
    pods = [f"{name}-redis-{i}" for i in range(6)]

    def nodes(via: str) -> list[list[str]]:
        return [line.split() for line in redis_cli(stack, via, "redis", "cluster", "nodes").splitlines() if line]

    table = nodes(pods[0])
    assert len(table) == 6 and sum("master" in row[2] for row in table) == 3
    assert all(row[1].split(",")[1].endswith(f".{name}-redis-headless.{stack.models}.svc") for row in table), \
        "nodes announce their stable DNS names"
    with httpx.Client(base_url=f"http://{ip}:8000", timeout=10, trust_env=False) as http:
        predict_hit(http)
        # the primary that holds the entry
        holders = [pod for pod in pods if role(stack, pod) == "master"
                   and int(redis_cli(stack, pod, "redis", "dbsize").strip() or 0) > 0]
        assert holders, "no primary holds the cached entry"
        victim = holders[0]
        old_uid = pod_uids(stack, name)[victim]

        def settled() -> bool:
            if pod_uids(stack, name).get(victim) in (None, old_uid) or not all_ready(stack, name, 6):
                return False
            table = nodes(victim)
            live = [row for row in table if "fail" not in row[2]]
            return (len(table) == 6 and len(live) == 6 and role(stack, victim) == "slave"
                    and sum("master" in row[2] for row in live) == 3)

        delete_and_stream(stack, http, victim, settled, capsys,
                          "failover done, the deleted node back as a replica (dead id forgotten), a hit",
                          report=lambda: f"{nodes(victim)}\n{pods_report(stack, name)}")
    masters = [row for row in nodes(pods[1]) if "master" in row[2]]
    replicas = [row for row in nodes(pods[1]) if "slave" in row[2]]
    assert sorted(row[3] for row in replicas) == sorted(row[0] for row in masters), \
        "every primary has exactly one replica again"
    stack.wait(lambda: stack.ready(name), 120, f"CachedModel {name} Ready after the failover")
    check_network_policy(stack, name, {pods[2]: 6379})
    stack.kubectl("delete", "cachedmodel", name, "-n", stack.models, "--wait=true", timeout=120)
