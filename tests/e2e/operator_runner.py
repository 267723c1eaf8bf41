"""The operator that a chart or manifests install deployed, really running, on any cluster.

- On a cluster that runs containers (CACHEDMODEL_REAL_PODS=1, kind): the in-cluster Deployment itself;
  we wait for its rollout.
- On the local control plane the Deployment's pod is a kwok fake that runs nothing, so the same
  `cachedmodel-operator run` runs here as a local process, configured from the ConfigMap the pod
  reads (envFrom) and authenticated with a token of the pod's ServiceAccount
  (`kubectl create token`), never the admin's credentials: the chart's RBAC is what gets tested.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

import yaml

from tests.e2e.helpers import CHART_DIR, CRD_NAME, REAL_PODS, get_json, wait_for
from cachedmodel_operator.testing.operator_process import OperatorProcess


def service_account_kubeconfig(admin_kubeconfig: str, token: str) -> dict:
    """A kubeconfig for the same server and CA as the admin's, authenticated by a ServiceAccount token."""
    admin = yaml.safe_load(Path(admin_kubeconfig).read_text())
    context = next(c["context"] for c in admin["contexts"] if c["name"] == admin["current-context"])
    cluster = next(c for c in admin["clusters"] if c["name"] == context["cluster"])
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": "operator-sa",
        "clusters": [cluster],
        "users": [{"name": "operator-sa", "user": {"token": token}}],
        "contexts": [{"name": "operator-sa", "context": {"cluster": cluster["name"], "user": "operator-sa"}}],
    }


class DeployedOperator:
    def __init__(self, cluster, namespace: str, deployment: str, workdir: Path):
        self.cluster, self.namespace, self.deployment = cluster, namespace, deployment
        self.workdir = workdir
        self.process: OperatorProcess | None = None
        self.started_with: str | None = None  # pod-template checksum the local process was started for

    # ---- the Deployment
    def spec(self) -> dict:
        found = get_json(self.cluster, "deployment", self.deployment, "-n", self.namespace)
        assert found, f"deployment {self.namespace}/{self.deployment} not found"
        return found

    def wait_rollout(self, timeout: int = 240) -> None:
        self.cluster.kubectl("rollout", "status", f"deployment/{self.deployment}", "-n", self.namespace,
                             f"--timeout={timeout}s", timeout=timeout + 15)

    def template_checksum(self) -> str:
        return self.spec()["spec"]["template"]["metadata"].get("annotations", {}).get("checksum/config", "")

    # ---- running it
    def start(self, local: bool | None = None) -> "DeployedOperator":
        """`local`: run the operator here as its pod would (default: unless the cluster's pods run)."""
        self.wait_rollout()
        if (not REAL_PODS) if local is None else local:
            self._start_local()
        return self

    def sync(self) -> None:
        """After an upgrade: wait for the new pod; a changed pod template restarts the local process too."""
        self.wait_rollout()
        if not REAL_PODS and self.template_checksum() != self.started_with:
            self.stop()
            self._start_local()

    def _start_local(self) -> None:
        pod = self.spec()["spec"]["template"]["spec"]
        container = pod["containers"][0]
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            config_map = get_json(self.cluster, "configmap", source["configMapRef"]["name"], "-n", self.namespace)
            env.update((config_map or {}).get("data") or {})
        token = self.cluster.kubectl("create", "token", pod["serviceAccountName"], "-n", self.namespace,
                                     "--duration=2h").stdout.strip()
        self.workdir.mkdir(parents=True, exist_ok=True)
        kubeconfig = self.workdir / f"operator-sa-{self.namespace}.kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(service_account_kubeconfig(self.cluster.kubeconfig, token)))
        kubeconfig.chmod(0o600)
        namespaces = [n for n in env.get("WATCH_NAMESPACES", "").split(",") if n]
        self.started_with = self.template_checksum()
        self.process = OperatorProcess(str(kubeconfig), namespaces=namespaces,
                                       resync_seconds=float(env.get("CACHEDMODEL_RESYNC_SECONDS", "30")),
                                       extra_env=env, log_dir=self.workdir).start()

    def healthy(self) -> bool:
        if REAL_PODS:
            status = self.spec().get("status") or {}
            return status.get("availableReplicas", 0) >= 1
        return self.process is not None and self.process.healthy()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def logs(self) -> str:
        if self.process is not None:
            return self.process.tail()
        result = self.cluster.kubectl("logs", f"deployment/{self.deployment}", "-n", self.namespace,
                                      "--tail=60", check=False)
        return result.stdout + result.stderr

    def wait(self, predicate, timeout: float, what: str, diagnose=None):
        """wait_for with the operator's log tail (and the caller's diagnosis) in the failure message."""
        return wait_for(predicate, timeout, what, interval=0.5,
                        diagnose=lambda: (diagnose() if diagnose else "") + "\n--- operator log ---\n" + self.logs())


def pod_names(cluster, namespace: str, selector: str) -> set[str]:
    out = cluster.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json").stdout
    return {p["metadata"]["name"] for p in json.loads(out)["items"] if not p["metadata"].get("deletionTimestamp")}


@contextlib.contextmanager
def installed_operator(stack, *helm_args: str):
    """The chart installed as release `stack.release` in `stack.namespace`, watching `stack.models` (both
    namespaces made here), its operator running as `stack.operator`. On exit every CachedModel, the release and
    both namespaces are deleted, and the CRD too when this install brought it."""
    cluster = stack.cluster
    crd_existed = get_json(cluster, "crd", CRD_NAME) is not None
    try:
        for namespace in (stack.namespace, stack.models):
            cluster.kubectl("create", "namespace", namespace)
        cluster.helm("install", stack.release, str(CHART_DIR), "-n", stack.namespace,
                     "--set", f"watchNamespaces[0]={stack.models}", *helm_args, "--wait", "--timeout", "5m",
                     timeout=400)
        stack.operator = DeployedOperator(cluster, stack.namespace, f"{stack.release}-cachedmodel-operator",
                                          stack.workdir).start()
        yield stack
    finally:
        if stack.operator:
            stack.operator.stop()
        cluster.kubectl("delete", "cachedmodels", "--all", "-n", stack.models, "--ignore-not-found", "--wait=false",
                        check=False)
        cluster.helm("uninstall", stack.release, "-n", stack.namespace, "--wait", check=False, timeout=300)
        for namespace in (stack.models, stack.namespace):
            cluster.kubectl("delete", "namespace", namespace, "--ignore-not-found", "--wait=false", check=False)
        if not crd_existed:
            cluster.kubectl("delete", "crd", CRD_NAME, "--ignore-not-found", check=False, timeout=120)
