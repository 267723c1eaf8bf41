"""Shared helpers of the shipping tests (chart, manifests, e2e): paths, helm, YAML, polling of cluster state.

Pure helpers plus thin subprocess wrappers; the cluster comes from the `kube_cluster` fixture
(tests/support/control_plane.py), whichever cluster that is (local control plane or kind).
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from cachedmodel.testing.redis_server import wait_until

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "charts" / "cachedmodel-operator"
CRD_FILE = CHART_DIR / "crds" / "cachedmodels.cachedmodel.dev.yaml"
CRD_NAME = "cachedmodels.cachedmodel.dev"
MANIFESTS_DIR = ROOT / "manifests"
EXAMPLE_FILE = MANIFESTS_DIR / "examples" / "insurance-charges.yaml"
RBAC_RULES_FILE = ROOT / "operator" / "rbac-rules.yaml"
OPERATOR_IMAGE = "cachedmodel/operator:0.1.0"
MODEL_IMAGE = "cachedmodel/insurance-charges-model:0.1.0"
KUBE_VERSION = "1.34.0"  # for `helm template` (chart kubeVersion check); the local plane runs v1.34
# Kinds the operator makes for a CachedModel (all owned by it).
CHILD_KINDS = ["deployments.apps", "statefulsets.apps", "services", "configmaps", "secrets",
               "networkpolicies.networking.k8s.io", "poddisruptionbudgets.policy"]
# The local e2e cluster runs real pods (tests/e2e/conftest.py); a cluster of CACHEDMODEL_KUBECONFIG's
# does when CACHEDMODEL_REAL_PODS=1 says so (kind, a user's cluster), else it may be a kwok one.
REAL_PODS = os.environ.get("CACHEDMODEL_REAL_PODS") == "1" or not os.environ.get("CACHEDMODEL_KUBECONFIG")
REAL_PODS_REASON = ("needs a cluster that really runs containers: CACHEDMODEL_KUBECONFIG names one without "
                    "CACHEDMODEL_REAL_PODS=1 (set it when its pods run, or unset CACHEDMODEL_KUBECONFIG to use "
                    "the local real-pods cluster)")


# ------------------------------------------------------------------ helm without a cluster


def helm_binary() -> str:
    """helm from $CACHEDMODEL_K8S_BIN_DIR or `make tools`; skips (fails under CACHEDMODEL_REQUIRE_K8S=1) when missing."""
    if os.environ.get("CACHEDMODEL_K8S_BIN_DIR"):
        candidates = [Path(os.environ["CACHEDMODEL_K8S_BIN_DIR"]) / "helm"]
    else:
        from scripts.build_tools import toolset_bin_dir

        candidates = [toolset_bin_dir() / "helm"]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    reason = f"helm not found at {candidates[0]}"
    if os.environ.get("CACHEDMODEL_REQUIRE_K8S") == "1":
        pytest.fail(f"CACHEDMODEL_REQUIRE_K8S=1 but {reason}: run `make tools`", pytrace=False)
    pytest.skip(f"{reason}: run `make tools`")


def helm_env() -> dict[str, str]:
    """helm keeps its cache/config in a throwaway place, never the user's home."""
    home = Path(tempfile.gettempdir()) / "cachedmodel-helm-home"
    return {**os.environ, "HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data")}


def helm_template_result(*args: str, values: dict | None = None, release: str = "rel",
                         namespace: str = "ops") -> subprocess.CompletedProcess:
    """`helm template` of the chart (values as a file, like a user's -f values.yaml)."""
    cmd = [helm_binary(), "template", release, str(CHART_DIR), "--namespace", namespace,
           "--kube-version", KUBE_VERSION, *args]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as handle:
        if values is not None:
            yaml.safe_dump(values, handle)
            handle.flush()
            cmd += ["-f", handle.name]
        return subprocess.run(cmd, capture_output=True, text=True, env=helm_env(), timeout=120)


def helm_template(*args: str, values: dict | None = None, release: str = "rel", namespace: str = "ops") -> list[dict]:
    result = helm_template_result(*args, values=values, release=release, namespace=namespace)
    assert result.returncode == 0, f"helm template failed: {result.stderr}"
    return [d for d in yaml.safe_load_all(result.stdout) if d]


# ------------------------------------------------------------------ YAML


def load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def find(docs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def example_cachedmodel(cluster=None) -> dict:
    """The example CachedModel of manifests/examples/ (no namespace: it goes where it is applied), with
    the cluster's Redis image when it has its own (the local real-pods cluster cannot pull redis:7.2)."""
    body = one(load_docs(EXAMPLE_FILE), "CachedModel")
    if cluster is not None and getattr(cluster, "redis_image", None):
        body["spec"].setdefault("redis", {})["image"] = cluster.redis_image
    return body


def rbac_rules_of_operator() -> dict:
    """operator/rbac-rules.yaml: what the operator says it needs."""
    assert RBAC_RULES_FILE.is_file(), (f"{RBAC_RULES_FILE.relative_to(ROOT)} is missing: the operator's own statement of "
                                       "the RBAC it needs, which the chart's rules must equal")
    return yaml.safe_load(RBAC_RULES_FILE.read_text())


# ------------------------------------------------------------------ cluster state


def get_json(cluster, *args: str) -> dict | None:
    """`kubectl get ... -o json`, or None when not found."""
    result = cluster.kubectl("get", *args, "-o", "json", check=False)
    if result.returncode != 0:
        if "NotFound" in result.stderr or "not found" in result.stderr:
            return None
        raise AssertionError(f"kubectl get {' '.join(args)} failed: {result.stderr}")
    return json.loads(result.stdout)


def items(cluster, *args: str) -> list[dict]:
    found = get_json(cluster, *args)
    return (found or {}).get("items", [])


def condition(obj: dict | None, kind: str) -> dict:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return {}


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5, diagnose=None):
    """wait_until with the cluster's view appended to the timeout message."""
    try:
        return wait_until(predicate, timeout, interval=interval, what=what)
    except TimeoutError as error:
        detail = diagnose() if diagnose else ""
        raise AssertionError(f"{error}\n{detail}") from None


def owned_children(cluster, namespace: str, owner_uid: str) -> dict[str, list[str]]:
    """kind -> names of objects in the namespace whose owner is the given CachedModel uid."""
    found: dict[str, list[str]] = {}
    for kind in CHILD_KINDS:
        for obj in items(cluster, kind, "-n", namespace):
            if any(ref.get("uid") == owner_uid for ref in obj["metadata"].get("ownerReferences") or []):
                found.setdefault(kind, []).append(obj["metadata"]["name"])
    return found


def managed_children(cluster, namespace: str) -> list[str]:
    """Everything in the namespace labelled as made by the operator, as kind/name."""
    out = cluster.kubectl("get", ",".join(CHILD_KINDS), "-n", namespace, "-o", "name",
                          "-l", "app.kubernetes.io/managed-by=cachedmodel-operator").stdout
    return [line for line in out.splitlines() if line.strip()]


def describe(cluster, namespace: str) -> str:
    """What a failing wait prints: the namespace's objects and recent events."""
    parts = []
    for args in (["get", "cachedmodels,all,configmaps,secrets", "-n", namespace, "-o", "wide"],
                 ["get", "cachedmodels", "-n", namespace, "-o", "yaml"],
                 ["get", "events", "-n", namespace, "--sort-by=.lastTimestamp"]):
        result = cluster.kubectl(*args, check=False)
        parts.append(f"$ kubectl {' '.join(args)}\n{result.stdout[-4000:]}{result.stderr[-1000:]}")
    return "\n".join(parts)


def apply_objects(cluster, docs: list[dict], namespace: str | None = None) -> None:
    args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
    cluster.kubectl(*args, input=yaml.safe_dump_all(docs))


# ------------------------------------------------------------------ real-pods traffic


def bridge_target(cluster, address: str) -> str:
    """`address` when it is a pod or Service address of the cluster's own bridge (the only non-loopback
    place test traffic may go); fails the test otherwise."""
    network = getattr(cluster, "network", None)
    assert network is not None, "sending to pod/Service addresses needs the local real-pods cluster (its bridge)"
    assert network.owns(address), f"{address} is not a pod or Service address of bridge {network.bridge}"
    return address


def redis_hits(metrics_text: str) -> float:
    """cachedmodel_cache_hits_total{tier="redis"} summed over models, from a /metrics page."""
    import re

    pattern = re.compile(r'^cachedmodel_cache_hits_total\{[^}]*tier="redis"[^}]*\}\s+([0-9.eE+-]+)$', re.MULTILINE)
    return sum(float(v) for v in pattern.findall(metrics_text))
