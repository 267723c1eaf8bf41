"""Real-pods benchmark: the operator and the example CachedModel on a local cluster whose pods run.

Starts cachedmodel_operator.testing.pods.PodsCluster (the control plane on a pod bridge plus one real
node: containerd, runc, kubelet, kube-proxy, CoreDNS, kube-network-policies; the images of `make
images` imported), installs the operator with `kubectl apply -f manifests/` (in-cluster, every
namespace), then, for TRIALS CachedModels in turn (the example, the cluster's local Redis image, 1
model replica), measures from the apply:
- apply -> Ready=True;
- apply -> the first cached prediction served (the same request POSTed every 0.2 s to the model
  Service's ClusterIP from the host, until `x-cache: hit`);
- Redis pod deleted -> the first hit from the new Redis pod (same stream; every non-200 is counted);
and reads each image's build time and size from the images manifest of `make images`.
Traffic goes only to the bridge's Service addresses (PodNetwork.owns). Needs root.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import httpx
import yaml

from bench.common import markdown_table, percentile, write_results

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from cachedmodel_operator.testing.control_plane import LOCAL_BINARIES, default_bin_dir, missing_binaries  # noqa: E402
from cachedmodel_operator.testing.images import archives, image_ref, images_manifest  # noqa: E402
from cachedmodel_operator.testing.pods import PodsCluster, missing_prerequisites  # noqa: E402

TRIALS = int(os.environ.get("BENCH_PODS_TRIALS", "3"))
MANIFESTS = REPO / "manifests"
EXAMPLE = MANIFESTS / "examples" / "insurance-charges.yaml"
OPERATOR_NS, OPERATOR_DEPLOYMENT = "cachedmodel-system", "cachedmodel-operator"
PREDICTION = {"age": 51, "sex": "female", "bmi": 31.2, "children": 0, "smoker": True, "region": "northwest"}
PREDICT_PATH = "/api/models/insurance_charges_model/prediction"
INTERVAL = 0.2  # between requests of a stream
TIMEOUT = 300   # per phase


def example(name: str, redis_image: str) -> dict:
    body = next(d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d and d["kind"] == "CachedModel")
    body["metadata"]["name"] = name
    body["spec"]["redis"]["image"] = redis_image
    body["spec"]["model"]["replicas"] = 1
    return body


def get(cluster: PodsCluster, *args: str) -> dict | None:
    result = cluster.kubectl("get", *args, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def ready(cluster: PodsCluster, ns: str, name: str) -> bool:
    body = get(cluster, "cachedmodel", name, "-n", ns)
    status = (body or {}).get("status") or {}
    return (status.get("observedGeneration") == body["metadata"]["generation"]
            and any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or []))


def wait(predicate, timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within {timeout}s")


class Stream:
    """The same prediction POSTed every INTERVAL s to a Service ClusterIP of the bridge."""

    def __init__(self, cluster: PodsCluster, ip: str, port: int = 8000):
        assert cluster.network.owns(ip), f"{ip} is not a Service address of the bridge"
        self.http = httpx.Client(base_url=f"http://{ip}:{port}", timeout=10, trust_env=False)
        self.statuses: dict[str, int] = {}

    def send(self) -> str:
        """'hit', 'miss', or why there was no 200 (connection refused while the pod starts, a status)."""
        try:
            response = self.http.post(PREDICT_PATH, json=PREDICTION)
        except httpx.HTTPError as error:
            outcome = type(error).__name__
        else:
            outcome = response.headers.get("x-cache", "none") if response.status_code == 200 \
                else str(response.status_code)
        self.statuses[outcome] = self.statuses.get(outcome, 0) + 1
        return outcome

    def until(self, done, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done(self.send()):
                return
            time.sleep(INTERVAL)
        raise TimeoutError(f"{what}: not within {timeout}s ({self.statuses})")

    def close(self) -> None:
        self.http.close()


def service_ip(cluster: PodsCluster, ns: str, name: str) -> str | None:
    body = get(cluster, "service", name, "-n", ns)
    return (body or {}).get("spec", {}).get("clusterIP")


def trial(cluster: PodsCluster, ns: str, name: str) -> dict:
    started = time.monotonic()
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(example(name, cluster.redis_image)))
    wait(lambda: service_ip(cluster, ns, name), 60, "model Service")
    stream = Stream(cluster, service_ip(cluster, ns, name))
    ready_s = None
    try:
        def first_hit(outcome: str) -> bool:
            nonlocal ready_s
            if ready_s is None and ready(cluster, ns, name):
                ready_s = time.monotonic() - started
            return outcome == "hit"

        stream.until(first_hit, TIMEOUT, "first cached prediction")
        first_hit_s = time.monotonic() - started
        if ready_s is None:
            wait(lambda: ready(cluster, ns, name), TIMEOUT, "Ready")
            ready_s = time.monotonic() - started
        before = dict(stream.statuses)
        selector = f"app.kubernetes.io/instance={name},app.kubernetes.io/component=cache"
        redis_pod = get(cluster, "pods", "-n", ns, "-l", selector)["items"][0]["metadata"]["name"]
        deleted = time.monotonic()
        cluster.kubectl("delete", "pod", redis_pod, "-n", ns, "--wait=false")
        missed = False

        def resumed(outcome: str) -> bool:
            nonlocal missed
            missed = missed or outcome != "hit"  # the new Redis starts empty: its first hit follows a miss
            return outcome == "hit" and missed

        stream.until(resumed, TIMEOUT, "hits after the Redis pod was deleted")
        resume_s = time.monotonic() - deleted
        during = {k: v - before.get(k, 0) for k, v in stream.statuses.items() if v - before.get(k, 0)}
        failed = sum(v for k, v in during.items() if k not in ("hit", "miss"))
        return {"ready_s": round(ready_s, 2), "first_hit_s": round(first_hit_s, 2), "redis_resume_s": round(resume_s, 2),
                "requests_during_redis_outage": sum(during.values()), "failed_during_redis_outage": failed,
                "outcomes_during_redis_outage": during}
    finally:
        stream.close()
        cluster.kubectl("delete", "cachedmodel", name, "-n", ns, "--timeout=120s", check=False, timeout=150)


def stats(samples: list[float]) -> dict:
    return {"p50_s": round(percentile(samples, 0.5), 2), "mean_s": round(statistics.fmean(samples), 2),
            "min_s": round(min(samples), 2), "max_s": round(max(samples), 2), "samples": len(samples)}


def image_rows(manifest: dict) -> list[dict]:
    return [{"name": name, "image": entry["image"], "size_mb": round(entry["size_bytes"] / 1e6, 1),
             "build_seconds": entry["build_seconds"], "cached": entry["cached"]}
            for name, entry in sorted(manifest["images"].items())]


def main() -> None:
    bin_dir = default_bin_dir()
    missing = missing_binaries(bin_dir, LOCAL_BINARIES) + missing_prerequisites(bin_dir)
    if missing:
        raise RuntimeError(f"bench_pods needs {', '.join(missing)} (`make test-pods` installs and builds them)")
    manifest = images_manifest()
    cluster = PodsCluster(bin_dir, images={image_ref(n, manifest): p for n, p in archives(manifest).items()},
                          sandbox_image=image_ref("pause", manifest), redis_image=image_ref("redis", manifest))
    try:
        cluster.start()
        installed = time.monotonic()
        cluster.kubectl("apply", "-f", str(MANIFESTS), timeout=120)
        cluster.kubectl("rollout", "status", f"deployment/{OPERATOR_DEPLOYMENT}", "-n", OPERATOR_NS,
                        "--timeout=240s", timeout=260)
        operator_s = time.monotonic() - installed
        ns = "bench-pods"
        cluster.kubectl("create", "namespace", ns)
        trials = [trial(cluster, ns, f"bench-{i}") for i in range(TRIALS)]
        results = {
            "trials": trials,
            "apply_to_ready": stats([t["ready_s"] for t in trials]),
            "apply_to_first_hit": stats([t["first_hit_s"] for t in trials]),
            "redis_deleted_to_hits": stats([t["redis_resume_s"] for t in trials]),
            "failed_predictions_during_redis_outage": sum(t["failed_during_redis_outage"] for t in trials),
            "operator_install_to_rollout_s": round(operator_s, 2),
            "cluster_startup_s": round(cluster.startup_seconds or 0, 1),
            "cluster_timings_s": cluster.timings,
            "images": image_rows(manifest),
            "images_manifest": {k: manifest.get(k) for k in ("engine", "engine_version", "bases", "written")},
        }
        markdown = render_markdown(results)
        write_results("pods", results, markdown)
        print(markdown)
    finally:
        cluster.kubectl("delete", "-f", str(MANIFESTS), "--ignore-not-found", "--wait=false", check=False,
                        timeout=120)
        cluster.stop()


def render_markdown(r: dict) -> str:
    rows = [[label, r[key]["p50_s"], r[key]["mean_s"], r[key]["min_s"], r[key]["max_s"]]
            for label, key in (("apply → Ready=True", "apply_to_ready"),
                               ("apply → first cached prediction (x-cache: hit)", "apply_to_first_hit"),
                               ("Redis pod deleted → hits again", "redis_deleted_to_hits"))]
    timing = markdown_table(["measure", "p50 s", "mean s", "min s", "max s"], rows)
    outage = sum(t["requests_during_redis_outage"] for t in r["trials"])
    images = markdown_table(["image", "tag", "size MB", "build s (last `make images`)", "from cache"],
                            [[i["name"], f"`{i['image']}`", i["size_mb"], i["build_seconds"],
                              "yes" if i["cached"] else "no"] for i in r["images"]])
    m = r["images_manifest"]
    return (f"## The example CachedModel on real pods ({len(r['trials'])} trials, 1 model replica + managed Redis)\n\n"
            f"{timing}\n\nPredictions sent while the Redis pod was replaced: {outage}, not answered 200: "
            f"**{r['failed_predictions_during_redis_outage']}** (the model answers while Redis is gone). "
            f"The operator (`kubectl apply -f manifests/`) was rolled out {r['operator_install_to_rollout_s']} s "
            f"after the apply; the cluster started in {r['cluster_startup_s']} s ({r['cluster_timings_s']}).\n\n"
            f"## Images (from the manifest of `make images`: {m['engine']} {m['engine_version']}, "
            f"{m['bases']} bases, written {m['written']})\n\n{images}\n\n"
            "Build times are those of the last `make images`; an image rebuilt from its keyed cache shows the "
            "cache hit's time (docs/images.md has cold and warm build times). One real node (containerd + runc) "
            "on this machine, 2 shared cores; requests POSTed every 0.2 s from the host to the model Service's "
            "ClusterIP.")


if __name__ == "__main__":
    main()
