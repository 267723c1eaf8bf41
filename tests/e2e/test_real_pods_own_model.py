"""Issue 19 on real pods: a second model through the door, the pod fields on a real node, shared
single-flight across pods, and an epoch bump under traffic.

One operator installed with Helm from the chart (status.cache read every 5 s), watching one namespace;
each test applies CachedModels of its own there. All traffic goes to the bridge's pod and Service
addresses (checked with cluster.network.owns), bounded in count and time.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from cachedmodel_operator.testing.images import image_ref, images_manifest
from tests.e2e.helpers import bridge_target, condition, describe, example_cachedmodel, get_json, items, wait_for
from tests.e2e.operator_runner import DeployedOperator, installed_operator
from tests.support.metrics import page_metric

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.needs_real_pods]

READY_TIMEOUT = 300
INSURANCE_PATH = "/api/models/insurance_charges_model/prediction"
PREDICTION = {"age": 37, "sex": "male", "bmi": 27.3, "children": 2, "smoker": False, "region": "southwest"}


@dataclass
class Stack:
    cluster: object
    release: str
    namespace: str
    models: str
    workdir: Path
    operator: DeployedOperator | None = None
    names: list[str] = field(default_factory=list)

    def kubectl(self, *args, **kwargs):
        return self.cluster.kubectl(*args, **kwargs)

    def apply(self, body: dict) -> str:
        self.kubectl("apply", "-n", self.models, "-f", "-", input=json.dumps(body))
        self.names.append(body["metadata"]["name"])
        return body["metadata"]["name"]

    def delete(self, name: str) -> None:
        self.kubectl("delete", "cachedmodel", name, "-n", self.models, "--ignore-not-found", "--wait=false",
                     check=False)

    def cachedmodel(self, name: str) -> dict:
        return get_json(self.cluster, "cachedmodel", name, "-n", self.models) or {}

    def ready(self, name: str) -> bool:
        found = self.cachedmodel(name)
        return bool(found) and (found.get("status") or {}).get("observedGeneration") == \
            found["metadata"]["generation"] and condition(found, "Ready").get("status") == "True"

    def wait(self, predicate, timeout: float, what: str):
        return wait_for(predicate, timeout, what, diagnose=lambda: describe(self.cluster, self.models))

    def wait_ready(self, name: str) -> None:
        self.wait(lambda: self.ready(name), READY_TIMEOUT, f"CachedModel {name} Ready")

    def model_pods(self, name: str) -> list[dict]:
        selector = f"app.kubernetes.io/instance={name},app.kubernetes.io/component=model"
        return [p for p in items(self.cluster, "pods", "-n", self.models, "-l", selector)
                if not p["metadata"].get("deletionTimestamp")]

    def service_url(self, name: str) -> str:
        ip = get_json(self.cluster, "service", name, "-n", self.models)["spec"]["clusterIP"]
        return f"http://{bridge_target(self.cluster, ip)}:8000"

    def pod_urls(self, name: str) -> list[str]:
        return [f"http://{bridge_target(self.cluster, p['status']['podIP'])}:8000" for p in self.model_pods(name)
                if condition(p, "Ready").get("status") == "True"]


def cachedmodel(stack: Stack, name: str, **spec) -> dict:
    """The example CachedModel (the cluster's Redis image) named `name`, with spec sections merged in."""
    body = example_cachedmodel(stack.cluster)
    body["metadata"] = {"name": name}
    for section, value in spec.items():
        body["spec"].setdefault(section, {}).update(value)
    return body


def serving(url: str) -> bool:
    try:
        return httpx.get(f"{url}/api/health/ready", timeout=3, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def stack(kube_cluster, tmp_path_factory):
    if getattr(kube_cluster, "network", None) is None:
        pytest.skip("needs the local real-pods cluster: the host sends to its bridge's pod and Service addresses")
    suffix = uuid.uuid4().hex[:6]
    st = Stack(cluster=kube_cluster, release=f"own{suffix}", namespace=f"cm-own-op-{suffix}",
               models=f"cm-own-models-{suffix}", workdir=tmp_path_factory.mktemp("own-model"))
    with installed_operator(st, "--set", "cacheStatus.scrapeSeconds=5"):
        yield st


# ------------------------------------------------------------------ a second model through the door

def test_the_iris_model_from_its_own_image_serves_a_miss_then_a_hit(stack: Stack):
    """A different model (its own input schema, a string class out), built FROM the runtime image."""
    image = image_ref("iris-model", images_manifest())
    name = stack.apply(cachedmodel(stack, "iris", model={"image": image, "imagePullPolicy": "IfNotPresent",
                                                         "classPath": "iris_model.model.IrisModel"}))
    stack.wait_ready(name)
    url = stack.service_url(name)
    wait_for(lambda: serving(url), 60, f"iris Service {url}")
    flower = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    with httpx.Client(base_url=url, timeout=10, trust_env=False) as http:
        first = http.post("/api/models/iris_model/prediction", json=flower)
        assert first.status_code == 200, first.text
        assert first.headers.get("x-cache") == "miss"
        second = http.post("/api/models/iris_model/prediction", json=flower)
        assert second.status_code == 200 and second.headers.get("x-cache") == "hit", second.text
        assert second.json() == first.json() and first.json()["species"] == "setosa"
        bad = http.post("/api/models/iris_model/prediction", json={**flower, "petal_width": "wide"})
        assert bad.status_code in (400, 422) and "petal_width" in bad.text, bad.text
    stack.delete(name)


# ------------------------------------------------------------------ pod fields on a real node

def test_pod_fields_reach_the_real_pod_and_a_placement_no_node_matches_stays_pending(stack: Stack):
    (node,) = items(stack.cluster, "nodes")
    node_name = node["metadata"]["name"]
    label, taint = "cachedmodel.dev/e2e-pool", "cachedmodel.dev/e2e-dedicated"
    stack.kubectl("label", "node", node_name, f"{label}=models", "--overwrite")
    # PreferNoSchedule: steers nothing away on a one-node cluster (other tests' pods still land there)
    stack.kubectl("taint", "node", node_name, f"{taint}=models:PreferNoSchedule", "--overwrite")
    try:
        placed = stack.apply(cachedmodel(stack, "placed", model={
            "nodeSelector": {label: "models"},
            "tolerations": [{"key": taint, "operator": "Equal", "value": "models", "effect": "PreferNoSchedule"}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": label, "operator": "In", "values": ["models"]}]}]}}},
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                           "whenUnsatisfiable": "DoNotSchedule"}],
            "podLabels": {"team": "pricing"}, "podAnnotations": {"example.com/owner": "pricing team"},
            "volumes": [{"name": "trace", "emptyDir": {"sizeLimit": "16Mi"}}],
            "volumeMounts": [{"name": "trace", "mountPath": "/trace"}],
            "env": [{"name": "CACHEDMODEL_KEY_TRACE", "value": "/trace/keys"}],
            "startupTimeoutSeconds": 300}, redis={"nodeSelector": {label: "models"}}))
        nowhere = stack.apply(cachedmodel(stack, "nowhere", model={"nodeSelector": {label: "gpus"}}))
        stack.wait_ready(placed)
        (pod,) = stack.model_pods(placed)
        assert pod["spec"]["nodeName"] == node_name
        assert pod["metadata"]["labels"]["team"] == "pricing"
        assert pod["metadata"]["annotations"]["example.com/owner"] == "pricing team"
        probe = next(c for c in pod["spec"]["containers"] if c["name"] == "model")["startupProbe"]
        assert probe["periodSeconds"] * probe["failureThreshold"] == 300
        url = stack.service_url(placed)
        wait_for(lambda: serving(url), 60, f"Service of {placed}")
        assert httpx.post(f"{url}{INSURANCE_PATH}", json=PREDICTION, timeout=10, trust_env=False).status_code == 200
        # the mounted emptyDir is writable by the service (uid 10001, read-only root): the key trace is there
        listing = stack.kubectl("exec", "-n", stack.models, pod["metadata"]["name"], "-c", "model", "--",
                                "python", "-c", "import os; print(os.path.getsize('/trace/keys'))").stdout
        assert int(listing.strip()) > 0

        def pending_reason() -> str:
            message = condition(stack.cachedmodel(nowhere), "ModelReady").get("message") or ""
            return message if "not scheduled" in message else ""

        message = stack.wait(pending_reason, 120, f"ModelReady of {nowhere} saying why it is not scheduled")
        assert "node affinity/selector" in message or "didn't match" in message, message
        assert all(p["status"].get("phase") == "Pending" for p in stack.model_pods(nowhere))
        assert condition(stack.cachedmodel(nowhere), "Ready").get("status") == "False"
    finally:
        stack.kubectl("taint", "node", node_name, f"{taint}=models:PreferNoSchedule-", check=False)
        stack.kubectl("label", "node", node_name, f"{label}-", check=False)
        for name in ("placed", "nowhere"):
            stack.delete(name)


# ------------------------------------------------------------------ shared single-flight across pods

def _burst_of_identical_misses(stack: Stack, name: str, inputs: int, per_pod: int) -> float:
    """`per_pod` concurrent identical requests to each of the 2 pods, for each of `inputs` new inputs
    (all released together by a barrier); returns the model calls the pods counted."""
    pods = stack.pod_urls(name)
    assert len(pods) == 2, pods
    before = sum(page_metric(httpx.get(f"{url}/metrics", timeout=10, trust_env=False).text,
                        "cachedmodel_model_seconds_count") for url in pods)
    with httpx.Client(timeout=30, trust_env=False, limits=httpx.Limits(max_connections=2 * per_pod)) as http:
        for number in range(inputs):
            body = {**PREDICTION, "age": 20 + number, "bmi": 31.7}
            barrier = threading.Barrier(2 * per_pod)

            def send(url: str) -> int:
                barrier.wait(timeout=30)
                return http.post(f"{url}{INSURANCE_PATH}", json=body).status_code

            with ThreadPoolExecutor(2 * per_pod) as pool:
                codes = list(pool.map(send, [url for url in pods for _ in range(per_pod)]))
            assert codes == [200] * (2 * per_pod), codes
    after = sum(page_metric(httpx.get(f"{url}/metrics", timeout=10, trust_env=False).text,
                       "cachedmodel_model_seconds_count") for url in pods)
    return after - before


def test_shared_single_flight_calls_the_model_once_for_identical_misses_on_two_pods(stack: Stack, capsys):
    inputs, per_pod = 6, 8
    names = {"shared": True, "unshared": False}
    for name, shared in names.items():
        stack.apply(cachedmodel(stack, name, model={"replicas": 2},
                                cache={"sharedSingleFlight": shared, **({"leaseSeconds": 5} if shared else {})}))
    try:
        calls = {}
        for name in names:
            stack.wait_ready(name)
            stack.wait(lambda: len(stack.pod_urls(name)) == 2 and all(serving(u) for u in stack.pod_urls(name)),
                       120, f"both pods of {name} serving")
            calls[name] = _burst_of_identical_misses(stack, name, inputs, per_pod)
        with capsys.disabled():
            print(f"\n[real pods] {inputs} inputs x {2 * per_pod} concurrent identical requests over 2 pods: "
                  f"model calls {calls}")
        assert calls["shared"] == inputs, "with sharedSingleFlight each input is computed once for both pods"
        # the control: without the lease each pod computes its own miss (in-process single-flight only)
        assert calls["unshared"] > inputs, calls
    finally:
        for name in names:
            stack.delete(name)


# ------------------------------------------------------------------ epoch: O(1) invalidation under traffic

class Traffic:
    """Requests through the Service in a loop until stopped (bounded: at most `limit` requests)."""

    def __init__(self, url: str, limit: int = 20000):
        self.url, self.limit = url, limit
        self.sent = self.failed = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10, trust_env=False) as http:
            while not self._stop.is_set() and self.sent < self.limit:
                self.sent += 1
                try:
                    response = http.post(INSURANCE_PATH, json={**PREDICTION, "age": 18 + self.sent % 40})
                    if response.status_code != 200:
                        self.failed += 1
                        self.errors.append(f"{response.status_code} {response.text[:200]}")
                except httpx.HTTPError as error:
                    self.failed += 1
                    self.errors.append(repr(error))

    def __enter__(self) -> "Traffic":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)


def test_bumping_the_epoch_under_traffic_loses_nothing_and_starts_a_new_namespace(stack: Stack, capsys):
    name = stack.apply(cachedmodel(stack, "epoch", model={"replicas": 2}))
    try:
        stack.wait_ready(name)
        url = stack.service_url(name)
        wait_for(lambda: serving(url), 60, f"Service of {name}")
        cached = {**PREDICTION, "children": 5, "region": "northeast"}  # the traffic below never sends it
        with httpx.Client(base_url=url, timeout=10, trust_env=False) as http:
            http.post(INSURANCE_PATH, json=cached)
            assert http.post(INSURANCE_PATH, json=cached).headers.get("x-cache") == "hit"
        stack.wait(lambda: (stack.cachedmodel(name).get("status") or {}).get("cache", {}).get("epoch") == 0, 60,
                   "status.cache.epoch 0")
        started = time.monotonic()
        with Traffic(url) as traffic:
            stack.kubectl("patch", "cachedmodel", name, "-n", stack.models, "--type", "merge",
                          "-p", json.dumps({"spec": {"cache": {"epoch": 1}}}))

            def rolled() -> bool:
                status = stack.cachedmodel(name).get("status") or {}
                return stack.ready(name) and status.get("cache", {}).get("epoch") == 1 and \
                    status.get("cache", {}).get("scrapedPods") == "2/2"

            stack.wait(rolled, READY_TIMEOUT, "every pod serving epoch 1 (status.cache.epoch)")
            seconds = time.monotonic() - started
        with capsys.disabled():
            print(f"\n[real pods] epoch bump: {traffic.sent} requests during the roll, {traffic.failed} failed, "
                  f"status.cache.epoch 1 after {seconds:.1f} s")
        assert traffic.failed == 0, traffic.errors[:5]
        assert traffic.sent > 0
        pods = stack.pod_urls(name)
        for pod in pods:  # every pod serves the new epoch
            assert page_metric(httpx.get(f"{pod}/metrics", timeout=10, trust_env=False).text,
                          "cachedmodel_cache_epoch") == 1
        with httpx.Client(base_url=url, timeout=10, trust_env=False) as http:
            first = http.post(INSURANCE_PATH, json=cached)
            second = http.post(INSURANCE_PATH, json=cached)
        assert (first.headers.get("x-cache"), second.headers.get("x-cache")) == ("miss", "hit"), \
            "an input cached before the bump is a miss in the new epoch, then a hit"
    finally:
        stack.delete(name)
