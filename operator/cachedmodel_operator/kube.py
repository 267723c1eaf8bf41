"""The operator's only Kubernetes I/O: server-side apply, the password Secret, status, events, deletes,
and reading the pods of a not-ready workload (to say why).

Thin wrappers over kubernetes-client's ApiClient.call_api so that every request is explicit here
(and the RBAC in operator/rbac-rules.yaml can be read off this file).
"""
from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime, timezone

import kubernetes
from kubernetes.client.exceptions import ApiException

from cachedmodel_operator import schema
from cachedmodel_operator.resource import MANAGER

log = logging.getLogger(__name__)

# kind -> (API path prefix, plural)
KINDS = {
    "ConfigMap": ("/api/v1", "configmaps"),
    "Secret": ("/api/v1", "secrets"),
    "Service": ("/api/v1", "services"),
    "Event": ("/api/v1", "events"),
    "Pod": ("/api/v1", "pods"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "StatefulSet": ("/apis/apps/v1", "statefulsets"),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies"),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets"),
    "HorizontalPodAutoscaler": ("/apis/autoscaling/v2", "horizontalpodautoscalers"),
    schema.KIND: (f"/apis/{schema.API_VERSION}", schema.PLURAL),
}


def load_api_client(kubeconfig: str | None = None) -> kubernetes.client.ApiClient:
    """In-cluster service account when available, else $KUBECONFIG / ~/.kube/config."""
    configuration = kubernetes.client.Configuration()
    try:
        if kubeconfig:
            raise kubernetes.config.ConfigException("explicit kubeconfig")
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    configuration.connection_pool_maxsize = 32
    return kubernetes.client.ApiClient(configuration)


class Kube:
    """Requests the reconciler makes; raises ApiException on errors it does not handle itself."""

    def __init__(self, api: kubernetes.client.ApiClient):
        self.api = api

    def _call(self, method: str, path: str, body=None, query=None, content_type: str | None = None):
        """One request; returns the decoded JSON body, raises ApiException on a non-2xx answer."""
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        method, url, headers, body, post = self.api.param_serialize(
            method, path, query_params=query or [], header_params=headers, body=body,
            auth_settings=["BearerToken"])
        response = self.api.call_api(method, url, header_params=headers, body=body, post_params=post,
                                     _request_timeout=30)
        data = response.read()
        if not 200 <= response.status <= 299:
            raise ApiException(http_resp=response)
        return json.loads(data) if data else None

    @staticmethod
    def path(kind: str, namespace: str, name: str | None = None, sub: str | None = None) -> str:
        prefix, plural = KINDS[kind]
        path = f"{prefix}/namespaces/{namespace}/{plural}"
        if name:
            path += f"/{name}"
        if sub:
            path += f"/{sub}"
        return path

    def apply(self, obj: dict) -> dict:
        """Server-side apply with force: our fields win, fields others own are left alone; no-op when equal."""
        meta = obj["metadata"]
        return self._call("PATCH", self.path(obj["kind"], meta["namespace"], meta["name"]), body=obj,
                          query=[("fieldManager", MANAGER), ("force", "true")],
                          content_type="application/apply-patch+yaml")

    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        try:
            return self._call("GET", self.path(kind, namespace, name))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def list_pods(self, namespace: str, selector: dict[str, str]) -> list[dict]:
        """Pods matching the labels (read only; the status says why a workload is not ready)."""
        labels = ",".join(f"{key}={value}" for key, value in sorted(selector.items()))
        return self._call("GET", self.path("Pod", namespace), query=[("labelSelector", labels)])["items"]

    def create(self, obj: dict) -> dict:
        meta = obj["metadata"]
        return self._call("POST", self.path(obj["kind"], meta["namespace"]), body=obj,
                          query=[("fieldManager", MANAGER)])

    def delete(self, kind: str, namespace: str, name: str, owner_uid: str | None = None,
               uid: str | None = None) -> bool:
        """Delete if present (and, when owner_uid is given, only if that CachedModel controls it). `uid` is a
        precondition: the object we inspected, not one created under its name since (409 = left alone)."""
        if owner_uid is not None:
            live = self.get(kind, namespace, name)
            owners = ((live or {}).get("metadata") or {}).get("ownerReferences") or []
            if not any(ref.get("uid") == owner_uid for ref in owners):
                return False
            uid = uid or live["metadata"].get("uid")
        options: dict = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        if uid:
            options["preconditions"] = {"uid": uid}
        try:
            self._call("DELETE", self.path(kind, namespace, name), body=options)
            return True
        except ApiException as error:
            if error.status in (404, 409):  # gone, or replaced by another object since we looked
                return False
            raise

    def patch_status(self, namespace: str, name: str, status: dict) -> dict:
        return self._call("PATCH", self.path(schema.KIND, namespace, name, "status"), body={"status": status},
                          content_type="application/merge-patch+json")

    def warn(self, body: dict, reason: str, message: str, event_type: str = "Warning") -> None:
        """A Warning (or `event_type`) event on the CachedModel (best effort: never fails the reconcile)."""
        meta = body["metadata"]
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:12]}", "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": schema.API_VERSION, "kind": schema.KIND, "name": meta["name"],
                               "namespace": meta["namespace"], "uid": meta.get("uid")},
            "type": event_type, "reason": reason, "message": message[:1024],
            "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
            "source": {"component": MANAGER}, "reportingComponent": MANAGER,
        }
        try:
            self._call("POST", self.path("Event", meta["namespace"]), body=event)
        except Exception as error:  # ApiException, or urllib3's MaxRetryError while the API server is away
            detail = error.reason if isinstance(error, ApiException) else f"{type(error).__name__}: {error}"
            log.warning("could not post event %s on %s/%s: %s", reason, meta["namespace"], meta["name"], detail)
