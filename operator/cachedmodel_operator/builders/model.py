"""The model-service Deployment and Service (rest-model-service serving the model, decorator inside)."""
from __future__ import annotations

import copy
import math

from cachedmodel_operator.builders.hardening import container_security_context, hardened_pod_spec
from cachedmodel_operator.builders.placement import pod_placement
from cachedmodel_operator.builders.service_config import CONFIG_DIR, CONFIG_PATH
from cachedmodel_operator.resource import AUTH_UID, CONFIG_CHECKSUM, CachedModel

APP = "model-service"
COMPONENT = "model"
RUN_AS = 10001
METRICS_PATH = "/metrics"
STARTUP_PERIOD_SECONDS = 2
# On deletion the pod keeps serving while the endpoint removal reaches every node's proxy (preStop), then
# on SIGTERM answers 5 s more with `connection: close` (CACHEDMODEL_DRAIN_SECONDS) and lets uvicorn finish
# in-flight requests (timeout_graceful_shutdown 10 s): the grace period covers all three.
PRE_STOP_SECONDS = 5
TERMINATION_GRACE_SECONDS = 30
DEFAULT_STARTUP_TIMEOUT_SECONDS = 120  # spec.model.startupTimeoutSeconds when unset


def scrape_annotations(cm: CachedModel) -> dict[str, str]:
    """The prometheus.io/* convention (Prometheus' kubernetes_sd examples, many Helm charts): where the
    model service's /metrics is; on the pod template and on the Service."""
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(cm.model["port"]),
            "prometheus.io/path": METRICS_PATH}


def model_env(cm: CachedModel) -> list[dict]:
    """Operator-set variables first (the image contract), then the user's spec.model.env."""
    env = [
        {"name": "PORT", "value": str(cm.model["port"])},
        {"name": "REST_CONFIG", "value": CONFIG_PATH},
    ]
    topology = cm.redis_topology
    if topology == "standalone":
        env.append({"name": "REDIS_URL", "value": cm.redis_url})
    elif topology == "sentinel":
        env += [{"name": "REDIS_SENTINELS", "value": ",".join(cm.sentinels)},
                {"name": "REDIS_SENTINEL_SERVICE", "value": cm.sentinel_service}]
    elif topology == "cluster":
        env.append({"name": "REDIS_CLUSTER_NODES", "value": ",".join(cm.cluster_nodes)})
    for name, secret in (("REDIS_PASSWORD", cm.password_secret), ("REDIS_SENTINEL_PASSWORD", cm.sentinel_password_secret)):
        if secret:
            env.append({"name": name, "valueFrom": {"secretKeyRef": {"name": secret[0], "key": secret[1]}}})
    return env + list(cm.model.get("env") or [])


def _probe(path: str, period: int, failures: int) -> dict:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period,
            "timeoutSeconds": 2, "failureThreshold": failures}


def startup_probe(cm: CachedModel) -> dict:
    """Probe every 2 s until the model has loaded, for at most spec.model.startupTimeoutSeconds."""
    timeout = cm.model.get("startupTimeoutSeconds") or DEFAULT_STARTUP_TIMEOUT_SECONDS
    return _probe("/api/health/startup", STARTUP_PERIOD_SECONDS, math.ceil(timeout / STARTUP_PERIOD_SECONDS))


def model_deployment(cm: CachedModel, config_checksum: str, auth_uid: str | None = None) -> dict:
    """Deployment of the model service; the config checksum (and Redis Secret uid) roll the pods on change.
    The user's pod fields come first, the operator's labels, annotations, volumes and mounts over them
    (the schema refuses a user value that would collide, so nothing is silently dropped)."""
    model = cm.model
    selector = cm.selector_labels(COMPONENT, APP)
    annotations = {**(model.get("podAnnotations") or {}), **scrape_annotations(cm), CONFIG_CHECKSUM: config_checksum}
    if auth_uid:
        annotations[AUTH_UID] = auth_uid
    labels = {**(model.get("podLabels") or {}), **cm.labels(COMPONENT, APP)}
    container = {
        "name": "model",
        "image": cm.model["image"],
        "ports": [{"name": "http", "containerPort": cm.model["port"], "protocol": "TCP"}],
        "env": model_env(cm),
        "resources": cm.model.get("resources") or {},
        "startupProbe": startup_probe(cm),
        "livenessProbe": _probe("/api/health", 10, 3),
        "readinessProbe": _probe("/api/health/ready", 5, 3),
        # a failed start (e.g. the decorator's ConfigurationError naming a bad option) ends the log: the
        # kubelet makes its tail the termination message, which the operator puts in ModelReady
        "terminationMessagePolicy": "FallbackToLogsOnError",
        # the kubelet's own sleep (Kubernetes 1.30+): no binary needed in the user's image
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}},
        "securityContext": container_security_context(),
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
            *copy.deepcopy(model.get("volumeMounts") or []),
        ],
    }
    if model.get("imagePullPolicy"):
        container["imagePullPolicy"] = model["imagePullPolicy"]
    pod = hardened_pod_spec(RUN_AS, [container], [
        {"name": "config", "configMap": {"name": cm.config_name}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        *copy.deepcopy(model.get("volumes") or []),
    ])
    pod["terminationGracePeriodSeconds"] = TERMINATION_GRACE_SECONDS
    pod.update(pod_placement(model, selector))
    for name in ("serviceAccountName", "imagePullSecrets"):
        if model.get(name):
            pod[name] = copy.deepcopy(model[name])
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": cm.metadata(cm.model_name, COMPONENT, APP),
        "spec": {
            "replicas": cm.model["replicas"],
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": pod,
            },
        },
    }


def model_service(cm: CachedModel) -> dict:
    """ClusterIP Service in front of the model pods: http://<name>.<namespace>.svc:<port> (its port `http`
    also serves /metrics: the chart's ServiceMonitor selects these Services by their labels)."""
    metadata = cm.metadata(cm.model_name, COMPONENT, APP)
    metadata["annotations"] = {**(metadata.get("annotations") or {}), **scrape_annotations(cm)}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "type": "ClusterIP",
            "selector": cm.selector_labels(COMPONENT, APP),
            "ports": [{"name": "http", "port": cm.model["port"], "targetPort": "http", "protocol": "TCP"}],
        },
    }
