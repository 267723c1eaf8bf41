"""Managed Redis: redis.conf ConfigMap, StatefulSet(s), headless + client Services, NetworkPolicy, PDB(s).

Three topologies (spec.redis.mode):
- standalone: one Redis pod behind the client Service <x>-redis.
- sentinel: StatefulSet <x>-redis of 1 + sentinel.replicas data pods and StatefulSet <x>-redis-sentinel of 3
  Sentinels (quorum 2). Everyone is known by the stable DNS name of its pod through a headless Service
  (publishNotReadyAddresses), never by IP: pods come back with new IPs.
- cluster: StatefulSet <x>-redis of shards x (1 + replicasPerShard) cluster-enabled pods; a sidecar
  (CLUSTER_AGENT_SCRIPT) in each creates the cluster once (pod -0, when every node answers and none is in a
  cluster yet) and makes a node that came back empty rejoin as replica of the primary that lacks one.

The operator never talks to Redis: the short POSIX sh scripts below (data, shellchecked by
tests/unit/operator/test_operator_redis_scripts.py) do it, with sh and redis-cli of the Redis image.
The password never appears in a ConfigMap or in process arguments: the container writes an include
file into its private /tmp from $REDIS_PASSWORD (a secretKeyRef) and starts redis-server on it.
"""
from __future__ import annotations

from cachedmodel_operator.builders.hardening import container_security_context, hardened_pod_spec
from cachedmodel_operator.builders.placement import pod_placement
from cachedmodel_operator.builders.model import APP as MODEL_APP, COMPONENT as MODEL_COMPONENT
from cachedmodel_operator.resource import (AUTH_UID, CLUSTER_BUS_PORT, CONFIG_CHECKSUM, PASSWORD_KEY, REDIS_PORT,
                                           SENTINEL_PORT, SENTINEL_QUORUM, SENTINELS, CachedModel)

APP = "redis"
COMPONENT = "cache"
SENTINEL_COMPONENT = "sentinel"
CONF_KEY = "redis.conf"
RUN_AS = 999  # the redis user of the official image
START_SCRIPT = (
    'umask 077 && printf \'include /etc/redis/redis.conf\\nrequirepass "%s"\\n\' "$REDIS_PASSWORD" '
    '> /tmp/redis.conf && exec redis-server /tmp/redis.conf'
)
SENTINEL_DOWN_AFTER_MS = 5000
SENTINEL_START_WAIT_SECONDS = 60  # how long a data pod waits for the Sentinels' answer (see the script)
CLUSTER_NODE_TIMEOUT_MS = 5000

# sentinel mode, data pod: follow the primary the Sentinels name; on a fresh deploy (the Sentinels name pod -0
# and know no replica yet) pod -0 is the primary. Two answers mean "wait" (bounded by START_WAIT_SECONDS,
# within the startup probe): no Sentinel answers (they are starting, or this new pod's address is not yet
# let through by the NetworkPolicy), or a Sentinel still names this very pod while knowing replicas (the pod
# that was just deleted, before the failover). Coming back at once as an empty primary would make the
# Sentinels keep it and the replicas copy it: every entry lost, and no failover.
SENTINEL_DATA_SCRIPT = r"""set -eu
umask 077
export REDISCLI_AUTH="$REDIS_PASSWORD"
me="$POD_NAME.$HEADLESS"
conf="${TMPDIR:-/tmp}/redis.conf"
ask() {
  for sentinel in $SENTINEL_HOSTS; do
    answer="$(timeout 3 redis-cli -h "$sentinel" -p 26379 --raw sentinel "$@" 2>/dev/null)" || continue
    case "$answer" in "" | ERR* | NOAUTH* | WRONGPASS* | NOPERM* | LOADING*) continue ;; esac
    echo "$answer"
    return 0
  done
}
deadline=$(($(date +%s) + START_WAIT_SECONDS))
while :; do
  primary="$(ask get-master-addr-by-name "$MASTER_NAME" | head -n 1)"
  if [ -z "$primary" ]; then
    why="no Sentinel answers"
  elif [ "$primary" = "$me" ] && [ -n "$(ask replicas "$MASTER_NAME")" ]; then
    why="the Sentinels still name this pod the primary"
  else
    break
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "$why after ${START_WAIT_SECONDS}s: starting anyway"
    break
  fi
  echo "$why: waiting"
  sleep 2
done
if [ -z "$primary" ]; then primary="$FIRST_NODE"; fi
{
  echo "include /etc/redis/redis.conf"
  printf 'requirepass "%s"\nmasterauth "%s"\n' "$REDIS_PASSWORD" "$REDIS_PASSWORD"
  echo "replica-announce-ip $me"
  if [ "$primary" != "$me" ]; then echo "replicaof $primary 6379"; fi
} > "$conf"
if [ "$primary" = "$me" ]; then echo "starting as the primary"; else echo "starting as replica of $primary"; fi
exec redis-server "$conf"
"""

# sentinel mode, Sentinel pod: monitor the primary the other Sentinels know (pod -0 on a fresh deploy).
SENTINEL_SCRIPT = r"""set -eu
umask 077
export REDISCLI_AUTH="$REDIS_PASSWORD"
me="$POD_NAME.$SENTINEL_HEADLESS"
primary=""
for sentinel in $SENTINEL_HOSTS; do
  if [ "$sentinel" = "$me" ]; then continue; fi
  primary="$(timeout 3 redis-cli -h "$sentinel" -p 26379 --raw sentinel get-master-addr-by-name "$MASTER_NAME" 2>/dev/null | head -n 1)" || primary=""
  case "$primary" in *" "*) primary="" ;; esac
  if [ -n "$primary" ]; then break; fi
done
if [ -z "$primary" ]; then primary="$FIRST_NODE"; fi
tries=0
until getent hosts "$primary" > /dev/null || [ "$tries" -ge 60 ]; do
  sleep 1
  tries=$((tries + 1))
done
{
  echo "port 26379"
  echo "dir /tmp"
  printf 'requirepass "%s"\n' "$REDIS_PASSWORD"
  echo "sentinel resolve-hostnames yes"
  echo "sentinel announce-hostnames yes"
  echo "sentinel announce-ip $me"
  echo "sentinel monitor $MASTER_NAME $primary 6379 $QUORUM"
  printf 'sentinel auth-pass %s "%s"\n' "$MASTER_NAME" "$REDIS_PASSWORD"
  echo "sentinel down-after-milliseconds $MASTER_NAME $DOWN_AFTER_MS"
  echo "sentinel failover-timeout $MASTER_NAME 20000"
  echo "sentinel parallel-syncs $MASTER_NAME 1"
} > /tmp/sentinel.conf
echo "monitoring $MASTER_NAME at $primary"
exec redis-server /tmp/sentinel.conf --sentinel
"""

# cluster mode, data pod: redis.conf has cluster-enabled; the pod announces its stable DNS name.
CLUSTER_DATA_SCRIPT = r"""set -eu
umask 077
{
  echo "include /etc/redis/redis.conf"
  printf 'requirepass "%s"\nmasterauth "%s"\n' "$REDIS_PASSWORD" "$REDIS_PASSWORD"
  echo "cluster-announce-hostname $POD_NAME.$HEADLESS"
} > /tmp/redis.conf
exec redis-server /tmp/redis.conf
"""

# cluster mode, sidecar of every data pod. Each round (5 s): a node in a cluster that is not ok meets its
# peers again (they may have come back with new IPs); a node alone joins a healthy cluster as replica of the
# primary with the fewest replicas, after the nodes forget the dead node of its name; pod -0 creates the
# cluster when every other node answers and is alone too (a fresh deploy). CLUSTER MEET and --cluster create
# take IP addresses: looked up from the pods' DNS names at that moment.
CLUSTER_AGENT_SCRIPT = r"""set -u
export REDISCLI_AUTH="$REDIS_PASSWORD"
me="$POD_NAME.$HEADLESS"
cli() { timeout 10 redis-cli --raw "$@" 2>/dev/null | tr -d '\r'; }
info() { cli -h "$1" cluster info | sed -n "s/^$2://p"; }
host() { echo "$STATEFULSET-$1.$HEADLESS"; }
address() { getent hosts "$1" | awk '{ print $1; exit }'; }
peers() {
  i=0
  while [ "$i" -lt "$NODES" ]; do
    if [ "$(host "$i")" != "$me" ]; then host "$i"; fi
    i=$((i + 1))
  done
}
healthy() {
  [ "$(info "$1" cluster_state)" = ok ] || return 1
  cli -h "$1" cluster nodes | awk '$3 ~ /master/ && $3 ~ /fail/ && NF > 8 { bad = 1 } END { exit bad }'
}
meet_all() {
  for peer in $(peers); do
    ip="$(address "$peer")"
    if [ -n "$ip" ]; then cli cluster meet "$ip" 6379 > /dev/null; fi
  done
}
create() {
  addresses=""
  for node in $(host 0) $(peers); do
    ip="$(address "$node")"
    if [ -z "$ip" ]; then return 0; fi
    addresses="$addresses $ip:6379"
  done
  echo "creating the cluster:$addresses"
  # shellcheck disable=SC2086
  timeout 120 redis-cli --cluster create $addresses --cluster-replicas "$REPLICAS_PER_SHARD" --cluster-yes
}
join() {
  view="$(cli -h "$1" cluster nodes)"
  for dead in $(echo "$view" | awk -v me="$me" '$3 ~ /fail/ && $2 ~ ("," me "$") { print $1 }'); do
    echo "forgetting $dead, the node this pod was before"
    for node in $(peers); do cli -h "$node" cluster forget "$dead" > /dev/null; done
  done
  primary="$(echo "$view" | awk '$3 ~ /master/ && $3 !~ /fail/ && NF > 8 { n[$1] = 0 }
    $3 ~ /slave/ && $3 !~ /fail/ { r[$4]++ }
    END { for (id in n) if (best == "" || r[id] + 0 < min) { best = id; min = r[id] + 0 }; print best }')"
  ip="$(address "$1")"
  if [ -z "$primary" ] || [ -z "$ip" ]; then return 0; fi
  echo "joining the cluster through $1 as replica of $primary"
  cli cluster meet "$ip" 6379 > /dev/null
  tries=0
  until cli cluster nodes | grep -q "^$primary " || [ "$tries" -ge 20 ]; do
    sleep 1
    tries=$((tries + 1))
  done
  cli cluster replicate "$primary"
}
while true; do
  sleep 5
  known="$(info localhost cluster_known_nodes)"
  if [ -z "$known" ]; then continue; fi
  if [ "$known" -gt 1 ]; then
    if [ "$(info localhost cluster_state)" != ok ]; then meet_all; fi
    continue
  fi
  alone=0
  joined=no
  for peer in $(peers); do
    count="$(info "$peer" cluster_known_nodes)"
    if [ "$count" = 1 ]; then alone=$((alone + 1)); fi
    if [ -n "$count" ] && [ "$count" -gt 1 ] && healthy "$peer"; then
      join "$peer"
      joined=yes
      break
    fi
  done
  if [ "$joined" = no ] && [ "$POD_NAME" = "$STATEFULSET-0" ] && [ "$alone" -eq $((NODES - 1)) ]; then create; fi
done
"""

SCRIPTS = {"standalone": START_SCRIPT, "sentinel-data": SENTINEL_DATA_SCRIPT, "sentinel": SENTINEL_SCRIPT,
           "cluster-data": CLUSTER_DATA_SCRIPT, "cluster-agent": CLUSTER_AGENT_SCRIPT}
READY_PING = 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli ping | grep -q PONG'
READY_CLUSTER = 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli cluster info | grep -q "^cluster_state:ok"'
# A Sentinel is ready once it monitors the primary AND knows a healthy replica of it (flags exactly "slave"):
# it learns replicas from the primary's INFO, some seconds after it starts, and a primary lost before that
# cannot be failed over ("-failover-abort-no-good-slave"). So Ready means a failover is possible.
READY_SENTINEL = ('REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli -p 26379 --raw sentinel replicas "$MASTER_NAME" '
                  '| awk \'prev == "flags" && $0 == "slave" { ok = 1 } { prev = $0 } END { exit !ok }\'')


def redis_conf(cm: CachedModel) -> str:
    """redis.conf: memory limit and eviction policy; snapshots and AOF only when persistence is asked;
    cluster settings in mode cluster (nodes.conf in the data dir)."""
    persistence = cm.redis["persistence"]["enabled"]
    lines = [
        "# generated by cachedmodel-operator from the CachedModel spec.redis",
        "bind * -::*",
        "protected-mode no",
        f"port {REDIS_PORT}",
        f"maxmemory {cm.redis['maxmemory'].lower()}",
        f"maxmemory-policy {cm.redis['maxmemoryPolicy']}",
        "dir /data",
    ]
    if persistence:
        lines += ["appendonly yes", "appendfsync everysec", "save 3600 1 300 100 60 10000"]
    else:
        lines += ["appendonly no", 'save ""']
    if cm.redis["mode"] == "cluster":
        lines += [
            "cluster-enabled yes",
            "cluster-config-file nodes.conf",
            f"cluster-node-timeout {CLUSTER_NODE_TIMEOUT_MS}",
            "cluster-preferred-endpoint-type hostname",
            # a cache: the other shards keep serving while one fails over, and a replica may always take over
            "cluster-require-full-coverage no",
            "cluster-replica-validity-factor 0",
        ]
    return "\n".join(lines) + "\n"


def redis_config_map(cm: CachedModel) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": cm.metadata(cm.redis_config_name, COMPONENT, APP),
        "data": {CONF_KEY: redis_conf(cm)},
    }


def redis_secret(cm: CachedModel, password: str) -> dict:
    """The generated password; created once and never rewritten by the operator (see reconcile)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": cm.metadata(cm.redis_secret_name, COMPONENT, APP),
        "stringData": {PASSWORD_KEY: password},
    }


def _env(name: str, value: str) -> dict:
    return {"name": name, "value": value}


def _password_env(cm: CachedModel) -> dict:
    return {"name": "REDIS_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": cm.redis_secret_name, "key": PASSWORD_KEY}}}


def _pod_name_env() -> dict:
    return {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}


def _exec_probe(command: str, period: int = 5) -> dict:
    return {"exec": {"command": ["sh", "-c", command]}, "periodSeconds": period, "timeoutSeconds": 2,
            "failureThreshold": 3}


def _sentinel_env(cm: CachedModel) -> list[dict]:
    """What both kinds of pod of mode sentinel need to find the Sentinels and the first primary."""
    return [_env("SENTINEL_HOSTS", " ".join(cm.sentinel_host(i) for i in range(SENTINELS))),
            _env("MASTER_NAME", cm.sentinel_service), _env("FIRST_NODE", cm.redis_host(0))]


def _data_container(cm: CachedModel) -> dict:
    """The Redis data container of any mode: script, ports, env and probes fit the mode."""
    mode = cm.redis["mode"]
    headless = f"{cm.redis_headless_name}.{cm.namespace}.svc"
    ports = [{"name": "redis", "containerPort": REDIS_PORT, "protocol": "TCP"}]
    env = [_password_env(cm)]
    readiness = _exec_probe(READY_PING)
    if mode == "standalone":
        script = START_SCRIPT
    elif mode == "sentinel":
        script = SENTINEL_DATA_SCRIPT
        env += [_pod_name_env(), _env("HEADLESS", headless), *_sentinel_env(cm),
                _env("START_WAIT_SECONDS", str(SENTINEL_START_WAIT_SECONDS))]
    else:
        script = CLUSTER_DATA_SCRIPT
        ports.append({"name": "cluster-bus", "containerPort": CLUSTER_BUS_PORT, "protocol": "TCP"})
        env += [_pod_name_env(), _env("HEADLESS", headless)]
        readiness = _exec_probe(READY_CLUSTER)
    container = {
        "name": "redis",
        "image": cm.redis["image"],
        "command": ["sh", "-c", script],
        "ports": ports,
        "env": env,
        "resources": cm.redis.get("resources") or {},
        "livenessProbe": {"tcpSocket": {"port": "redis"}, "periodSeconds": 10, "failureThreshold": 3},
        "readinessProbe": readiness,
        "terminationMessagePolicy": "FallbackToLogsOnError",  # redis-server's last words reach CacheReady
        "securityContext": container_security_context(),
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/redis", "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "data", "mountPath": "/data"},
        ],
    }
    if mode == "sentinel":  # the start may wait for the Sentinels (START_WAIT_SECONDS, plus up to 2 asks of
        # 3 x 3 s that time out): no liveness verdict before it listens
        container["startupProbe"] = {"tcpSocket": {"port": "redis"}, "periodSeconds": 2,
                                     "failureThreshold": (SENTINEL_START_WAIT_SECONDS + 30) // 2}
    return container


def _agent_container(cm: CachedModel) -> dict:
    """Mode cluster: the sidecar that creates the cluster and makes an empty node rejoin (no port, no probe)."""
    return {
        "name": "cluster-agent",
        "image": cm.redis["image"],
        "command": ["sh", "-c", CLUSTER_AGENT_SCRIPT],
        "env": [_password_env(cm), _pod_name_env(),
                _env("HEADLESS", f"{cm.redis_headless_name}.{cm.namespace}.svc"),
                _env("STATEFULSET", cm.redis_name), _env("NODES", str(cm.redis_nodes)),
                _env("REPLICAS_PER_SHARD", str(cm.redis["cluster"]["replicasPerShard"]))],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": container_security_context(),
    }


def _annotations(config_checksum: str | None, auth_uid: str | None) -> dict:
    annotations = {CONFIG_CHECKSUM: config_checksum} if config_checksum else {}
    if auth_uid:
        annotations[AUTH_UID] = auth_uid
    return annotations


def redis_statefulset(cm: CachedModel, config_checksum: str, auth_uid: str | None = None) -> dict:
    """The Redis data pods (1, 1 + replicas, or shards x (1 + replicasPerShard)); a redis.conf change (or a new
    Secret) rolls them via pod-template annotations."""
    persistence = cm.redis["persistence"]
    containers = [_data_container(cm)]
    if cm.redis["mode"] == "cluster":
        containers.append(_agent_container(cm))
    volumes = [
        {"name": "config", "configMap": {"name": cm.redis_config_name}},
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
    ]
    spec: dict = {
        "replicas": cm.redis_nodes,
        "serviceName": cm.redis_headless_name,
        "podManagementPolicy": "Parallel",
        "revisionHistoryLimit": 5,
        "selector": {"matchLabels": cm.selector_labels(COMPONENT, APP)},
        "updateStrategy": {"type": "RollingUpdate"},
        "template": {
            "metadata": {"labels": cm.labels(COMPONENT, APP), "annotations": _annotations(config_checksum, auth_uid)},
            "spec": {**hardened_pod_spec(RUN_AS, containers, volumes), **pod_placement(cm.redis)},
        },
    }
    if persistence["enabled"]:
        claim_spec: dict = {"accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": persistence["size"]}}}
        if persistence.get("storageClassName"):
            claim_spec["storageClassName"] = persistence["storageClassName"]
        spec["volumeClaimTemplates"] = [{"metadata": {"name": "data", "labels": cm.labels(COMPONENT, APP)},
                                         "spec": claim_spec}]
        spec["persistentVolumeClaimRetentionPolicy"] = {"whenDeleted": "Delete", "whenScaled": "Retain"}
    else:
        volumes.append({"name": "data", "emptyDir": {}})
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": cm.metadata(cm.redis_name, COMPONENT, APP),
        "spec": spec,
    }


def sentinel_statefulset(cm: CachedModel, auth_uid: str | None = None) -> dict:
    """Mode sentinel: the 3 Sentinels (quorum 2), known by their pod DNS names through <x>-redis-sentinel."""
    container = {
        "name": "sentinel",
        "image": cm.redis["image"],
        "command": ["sh", "-c", SENTINEL_SCRIPT],
        "ports": [{"name": "sentinel", "containerPort": SENTINEL_PORT, "protocol": "TCP"}],
        "env": [_password_env(cm), _pod_name_env(),
                _env("SENTINEL_HEADLESS", f"{cm.redis_sentinel_name}.{cm.namespace}.svc"), *_sentinel_env(cm),
                _env("QUORUM", str(SENTINEL_QUORUM)), _env("DOWN_AFTER_MS", str(SENTINEL_DOWN_AFTER_MS))],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
        # the start waits up to 60 s for the primary's DNS name (Sentinel refuses a monitor it cannot resolve)
        "startupProbe": {"tcpSocket": {"port": "sentinel"}, "periodSeconds": 2, "failureThreshold": 45},
        "livenessProbe": {"tcpSocket": {"port": "sentinel"}, "periodSeconds": 10, "failureThreshold": 3},
        "readinessProbe": _exec_probe(READY_SENTINEL),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    volumes = [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}]
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": cm.metadata(cm.redis_sentinel_name, SENTINEL_COMPONENT, APP),
        "spec": {
            "replicas": SENTINELS,
            "serviceName": cm.redis_sentinel_name,
            "podManagementPolicy": "Parallel",
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": cm.selector_labels(SENTINEL_COMPONENT, APP)},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": cm.labels(SENTINEL_COMPONENT, APP),
                             "annotations": _annotations(None, auth_uid)},
                "spec": {**hardened_pod_spec(RUN_AS, [container], volumes), **pod_placement(cm.redis)},
            },
        },
    }


def _service(cm: CachedModel, name: str, headless: bool) -> dict:
    spec: dict = {
        "selector": cm.selector_labels(COMPONENT, APP),
        "ports": [{"name": "redis", "port": REDIS_PORT, "targetPort": "redis", "protocol": "TCP"}],
    }
    if headless:
        spec.update(clusterIP="None", publishNotReadyAddresses=True)
    else:
        spec["type"] = "ClusterIP"
    return {"apiVersion": "v1", "kind": "Service", "metadata": _unscraped(cm.metadata(name, COMPONENT, APP)),
            "spec": spec}


# Redis runs no exporter: its figures (memory, maxmemory, keys, evictions) are the model pods'
# cachedmodel_redis_* series. prometheus.io/scrape "false" tells annotation-based discovery (which
# scrapes every Service saying "true") to leave the Redis ports alone.
NOT_SCRAPED = {"prometheus.io/scrape": "false"}


def _unscraped(metadata: dict) -> dict:
    metadata["annotations"] = {**(metadata.get("annotations") or {}), **NOT_SCRAPED}
    return metadata


def redis_headless_service(cm: CachedModel) -> dict:
    """Governing Service of the StatefulSet (stable pod DNS, also for pods not ready yet)."""
    service = _service(cm, cm.redis_headless_name, headless=True)
    if cm.redis["mode"] == "cluster":
        service["spec"]["ports"].append({"name": "cluster-bus", "port": CLUSTER_BUS_PORT,
                                         "targetPort": "cluster-bus", "protocol": "TCP"})
    return service


def redis_service(cm: CachedModel) -> dict:
    """Client Service the model pods use (REDIS_URL); standalone only: Sentinel and Cluster clients find the
    right node themselves, a Service in front of all nodes would send writes to replicas."""
    return _service(cm, cm.redis_name, headless=False)


def sentinel_service(cm: CachedModel) -> dict:
    """Governing Service of the Sentinels: their pod DNS names are REDIS_SENTINELS."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _unscraped(cm.metadata(cm.redis_sentinel_name, SENTINEL_COMPONENT, APP)),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": cm.selector_labels(SENTINEL_COMPONENT, APP),
            "ports": [{"name": "sentinel", "port": SENTINEL_PORT, "targetPort": "sentinel", "protocol": "TCP"}],
        },
    }


def _instance_redis_pods(cm: CachedModel) -> dict:
    """Every Redis pod of this CachedModel (data nodes and Sentinels)."""
    return {"app.kubernetes.io/name": APP, "app.kubernetes.io/instance": cm.name}


def redis_network_policy(cm: CachedModel) -> dict:
    """Only this CachedModel's model pods may reach Redis, and only on the ports clients use; in sentinel and
    cluster mode the Redis pods also reach each other (replication, Sentinel, cluster bus)."""
    model_pods = {"podSelector": {"matchLabels": cm.selector_labels(MODEL_COMPONENT, MODEL_APP)}}
    mode = cm.redis["mode"]
    if mode == "standalone":
        spec = {
            "podSelector": {"matchLabels": cm.selector_labels(COMPONENT, APP)},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [model_pods], "ports": [{"protocol": "TCP", "port": REDIS_PORT}]}],
        }
    else:
        client_ports = [REDIS_PORT] + ([SENTINEL_PORT] if mode == "sentinel" else [])
        peer_ports = client_ports + ([CLUSTER_BUS_PORT] if mode == "cluster" else [])
        spec = {
            "podSelector": {"matchLabels": _instance_redis_pods(cm)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [model_pods], "ports": [{"protocol": "TCP", "port": port} for port in client_ports]},
                {"from": [{"podSelector": {"matchLabels": _instance_redis_pods(cm)}}],
                 "ports": [{"protocol": "TCP", "port": port} for port in peer_ports]},
            ],
        }
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": cm.metadata(cm.redis_name, COMPONENT, APP),
        "spec": spec,
    }


def _pdb(cm: CachedModel, name: str, component: str) -> dict:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": cm.metadata(name, component, APP),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": cm.selector_labels(component, APP)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def redis_pdb(cm: CachedModel) -> dict:
    """PodDisruptionBudget of the Redis data pods: one at a time.

    Standalone: maxUnavailable 1 lets node drains proceed (a cache outage only costs hit rate: the decorator
    falls back to the model), while still declaring the budget so that tools and humans see it. Sentinel and
    cluster: one pod at a time, so a primary and its replica are never evicted together. Unhealthy pods may
    always be evicted so a crash-looping Redis never blocks a drain.
    """
    return _pdb(cm, cm.redis_name, COMPONENT)


def sentinel_pdb(cm: CachedModel) -> dict:
    """One Sentinel at a time: the other two keep the quorum of 2."""
    return _pdb(cm, cm.redis_sentinel_name, SENTINEL_COMPONENT)
