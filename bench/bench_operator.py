"""Operator benchmark on the local control plane (real kube-apiserver + controller-manager + kwok).

Measures, with the operator as a subprocess (`cachedmodel-operator run`):
- apply -> every child present, and apply -> Ready=True (p50 over several CachedModels), side by side
  with `kubectl apply` of the same manifests rendered by `cachedmodel-operator render` (no operator);
- drift repair: a deleted Deployment / ConfigMap / StatefulSet / Service back (p50);
- 50 CachedModels created at once -> all Ready=True;
- the operator process's CPU time and peak RSS (psutil + VmHWM).
Targets: children ≤ 2 s p50, drift ≤ 10 s, 50 all Ready ≤ 60 s.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psutil
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from bench.common import markdown_table, percentile, write_results

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from cachedmodel_operator.testing.control_plane import ControlPlane, default_bin_dir, missing_binaries, LOCAL_BINARIES  # noqa: E402
from cachedmodel_operator.testing.operator_process import OperatorProcess, install_crd  # noqa: E402

GROUP, VERSION, PLURAL = "cachedmodel.dev", "v1alpha1", "cachedmodels"
TRIALS = int(os.environ.get("BENCH_OPERATOR_TRIALS", "8"))
SCALE = int(os.environ.get("BENCH_OPERATOR_SCALE", "50"))
TARGETS = {"children_p50_s": 2.0, "drift_p50_s": 10.0, "scale_all_ready_s": 60.0}
CHILDREN = [("secret", "-redis-auth"), ("configmap", "-config"), ("configmap", "-redis-config"),
            ("service", ""), ("service", "-redis"), ("service", "-redis-headless"), ("statefulset", "-redis"),
            ("deployment", ""), ("networkpolicy", "-redis"), ("poddisruptionbudget", "-redis")]


def cached_model(name: str, replicas: int = 2) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CachedModel", "metadata": {"name": name},
            "spec": {"model": {"image": "cachedmodel/insurance-charges-model:0.1.0",
                               "classPath": "insurance_charges_model.model.InsuranceChargesModel",
                               "replicas": replicas},
                     "redis": {"maxmemory": "128mb", "maxmemoryPolicy": "allkeys-lru"}}}


class Api:
    """Typed clients for polling (the REST API directly: polling through kubectl would dominate)."""

    def __init__(self, api_client):
        self.core, self.apps = k8s.CoreV1Api(api_client), k8s.AppsV1Api(api_client)
        self.net, self.policy = k8s.NetworkingV1Api(api_client), k8s.PolicyV1Api(api_client)
        self.custom = k8s.CustomObjectsApi(api_client)

    def reader(self, kind: str):
        return {"secret": self.core.read_namespaced_secret, "configmap": self.core.read_namespaced_config_map,
                "service": self.core.read_namespaced_service, "statefulset": self.apps.read_namespaced_stateful_set,
                "deployment": self.apps.read_namespaced_deployment,
                "networkpolicy": self.net.read_namespaced_network_policy,
                "poddisruptionbudget": self.policy.read_namespaced_pod_disruption_budget}[kind]

    def delete(self, kind: str, ns: str, name: str) -> None:
        {"configmap": self.core.delete_namespaced_config_map, "service": self.core.delete_namespaced_service,
         "statefulset": self.apps.delete_namespaced_stateful_set,
         "deployment": self.apps.delete_namespaced_deployment}[kind](name, ns)

    def uid(self, kind: str, ns: str, name: str) -> str | None:
        try:
            return self.reader(kind)(name, ns).metadata.uid
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def all_children(self, ns: str, name: str) -> bool:
        return all(self.uid(kind, ns, name + suffix) for kind, suffix in CHILDREN)

    def ready(self, ns: str, name: str) -> bool:
        body = self.custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
        status = body.get("status") or {}
        return (status.get("observedGeneration") == body["metadata"]["generation"] and
                any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or []))

    def create(self, ns: str, body: dict) -> None:
        self.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)


def poll(predicate, timeout: float, interval: float = 0.02) -> float:
    """Seconds until predicate() is true, measured from the call; raises on timeout."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if predicate():
            return time.perf_counter() - started
        time.sleep(interval)
    raise TimeoutError(f"not reached within {timeout}s")


class ProcessMeter:
    """CPU seconds and peak RSS of the operator process (VmHWM is the kernel's high-water mark)."""

    def __init__(self, pid: int):
        self.process = psutil.Process(pid)
        self.pid = pid

    def cpu_seconds(self) -> float:
        times = self.process.cpu_times()
        return times.user + times.system

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return self.process.memory_info().rss / 2**20


def stats(samples: list[float]) -> dict:
    return {"p50_s": round(percentile(samples, 0.5), 3), "p90_s": round(percentile(samples, 0.9), 3),
            "max_s": round(max(samples), 3), "samples": len(samples)}


def bench_apply(cluster: ControlPlane, api: Api, ns: str) -> dict:
    children, ready = [], []
    for i in range(TRIALS):
        name = f"apply-{i}"
        started = time.perf_counter()
        api.create(ns, cached_model(name))
        children.append(time.perf_counter() - started + poll(lambda: api.all_children(ns, name), 30))
        ready.append(time.perf_counter() - started + poll(lambda: api.ready(ns, name), 60))
    # baseline: the same manifests rendered offline and applied by kubectl (no operator involved)
    direct = []
    for i in range(TRIALS):
        name = f"direct-{i}"
        rendered = subprocess.run([sys.executable, "-m", "cachedmodel_operator.cli", "render", "-f", "-", "-n", ns],
                                  input=json.dumps(cached_model(name)), capture_output=True, text=True, check=True)
        started = time.perf_counter()
        cluster.kubectl("apply", "-f", "-", input=rendered.stdout)
        direct.append(time.perf_counter() - started + poll(lambda: api.all_children(ns, name), 30))
    return {"children": stats(children), "ready": stats(ready), "direct_kubectl_apply": stats(direct)}


def bench_drift(api: Api, ns: str) -> dict:
    out = {}
    for kind, suffix in [("deployment", ""), ("configmap", "-config"), ("statefulset", "-redis"),
                         ("service", "-redis")]:
        samples = []
        for i in range(min(TRIALS, 5)):
            name = f"apply-{i}{suffix}"
            old = api.uid(kind, ns, name)
            started = time.perf_counter()
            api.delete(kind, ns, name)
            samples.append(time.perf_counter() - started +
                           poll(lambda: api.uid(kind, ns, name) not in (None, old), 60))
        out[kind] = stats(samples)
    return out


def bench_scale(api: Api, ns: str, meter: ProcessMeter) -> dict:
    cpu_before = meter.cpu_seconds()
    names = [f"scale-{i:02d}" for i in range(SCALE)]
    started = time.perf_counter()
    threads = [threading.Thread(target=api.create, args=(ns, cached_model(n, replicas=1))) for n in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    created = time.perf_counter() - started

    def all_ready() -> bool:
        items = api.custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]
        ready = [i for i in items if any(c["type"] == "Ready" and c["status"] == "True"
                                         for c in (i.get("status") or {}).get("conditions") or [])]
        return len(ready) == SCALE

    total = created + poll(all_ready, 180, interval=0.25)
    return {"cachedmodels": SCALE, "create_calls_s": round(created, 3), "all_ready_s": round(total, 3),
            "operator_cpu_s": round(meter.cpu_seconds() - cpu_before, 2)}


def main() -> None:
    bin_dir = default_bin_dir()
    missing = missing_binaries(bin_dir, LOCAL_BINARIES)
    if missing:
        raise SystemExit(f"bench_operator needs the Kubernetes binaries ({', '.join(missing)}): run `make tools`")
    cluster = ControlPlane(bin_dir).start()
    operator = None
    try:
        install_crd(cluster)
        operator = OperatorProcess(cluster.kubeconfig, resync_seconds=30).start()
        meter = ProcessMeter(operator.pid)
        api = Api(cluster.api_client())
        ns1, ns2 = f"bench-{uuid.uuid4().hex[:6]}", f"bench-scale-{uuid.uuid4().hex[:6]}"
        for ns in (ns1, ns2):
            cluster.kubectl("create", "namespace", ns)
        cpu_start = meter.cpu_seconds()
        apply = bench_apply(cluster, api, ns1)
        drift = bench_drift(api, ns1)
        scale = bench_scale(api, ns2, meter)
        results = {
            "apply": apply, "drift_repair": drift, "scale": scale,
            "operator_process": {"cpu_seconds_total": round(meter.cpu_seconds() - cpu_start, 2),
                                 "peak_rss_mb": round(meter.peak_rss_mb(), 1)},
            "targets": TARGETS,
            "control_plane_startup_s": round(cluster.startup_seconds or 0, 1),
        }
        drift_p50 = max(v["p50_s"] for v in drift.values())
        results["verdict"] = {
            "children_p50_ok": apply["children"]["p50_s"] <= TARGETS["children_p50_s"],
            "drift_p50_ok": drift_p50 <= TARGETS["drift_p50_s"],
            "scale_ok": scale["all_ready_s"] <= TARGETS["scale_all_ready_s"],
        }
        write_results("operator", results, render_markdown(results))
        print(render_markdown(results))
    finally:
        if operator:
            operator.stop()
        cluster.stop()


def render_markdown(r: dict) -> str:
    a, d, s, p = r["apply"], r["drift_repair"], r["scale"], r["operator_process"]
    ratio = a["children"]["p50_s"] / a["direct_kubectl_apply"]["p50_s"] if a["direct_kubectl_apply"]["p50_s"] else 0
    rows = [
        ["apply → every child present (operator)", a["children"]["p50_s"], a["children"]["p90_s"],
         a["children"]["max_s"], f"≤ {TARGETS['children_p50_s']} s p50", f"{ratio:.2f}x kubectl"],
        ["kubectl apply of `render` output → present (no operator)", a["direct_kubectl_apply"]["p50_s"],
         a["direct_kubectl_apply"]["p90_s"], a["direct_kubectl_apply"]["max_s"], "baseline", "1.00x"],
        ["apply → Ready=True (kwok pods)", a["ready"]["p50_s"], a["ready"]["p90_s"], a["ready"]["max_s"], "", ""],
    ]
    rows += [[f"deleted {kind} repaired", v["p50_s"], v["p90_s"], v["max_s"], f"≤ {TARGETS['drift_p50_s']} s", ""]
             for kind, v in d.items()]
    table = markdown_table(["measure", "p50 s", "p90 s", "max s", "target", "vs baseline"], rows)
    scale = markdown_table(["CachedModels at once", "create calls s", "all Ready s", "target", "operator CPU s"],
                           [[s["cachedmodels"], s["create_calls_s"], s["all_ready_s"],
                             f"≤ {TARGETS['scale_all_ready_s']} s", s["operator_cpu_s"]]])
    proc = markdown_table(["operator process", "value"],
                          [["CPU time over the whole run (s)", p["cpu_seconds_total"]],
                           ["peak RSS (MiB)", p["peak_rss_mb"]]])
    return (f"## Reconcile latency ({a['children']['samples']} CachedModels, 2 model replicas + managed Redis)\n\n"
            f"{table}\n\n## Scale\n\n{scale}\n\n## Cost\n\n{proc}\n\n"
            f"Local control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok nodes) on this "
            f"machine; the operator as a subprocess with resync 30 s. The kubectl baseline includes kubectl's own "
            f"start-up; Ready times are bounded by the controller-manager and kwok making pods Ready (the operator "
            f"used {s['operator_cpu_s']} CPU s for {s['cachedmodels']} CachedModels). Verdict: {r['verdict']}.")


if __name__ == "__main__":
    main()
