"""The chart's monitoring: ServiceMonitor/PodMonitor selecting what the operator makes, the PrometheusRule
run through Prometheus's own rule tester (promtool check rules / test rules), the Grafana dashboard
ConfigMap, and all of it accepted by a real kube-apiserver serving the Prometheus Operator's real CRDs.
Needs helm, promtool and the Prometheus Operator CRDs from `make tools`."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

from cachedmodel_operator import builders
from cachedmodel_operator.builders import model as model_builder
from cachedmodel_operator.resource import CachedModel
from scripts.build_tools import PROMETHEUS_OPERATOR_CRDS, prometheus_operator_crds_dir, promtool_path
from tests.e2e.helpers import CHART_DIR, find, get_json, helm_template, helm_template_result, one
from tests.support.promql_names import TARGET_LABELS, exported_series, used_series
from cachedmodel_operator.testing.operator_process import crd_established
from cachedmodel_operator.testing.processes import wait_until

pytestmark = pytest.mark.k8s

RULE_TESTS = Path(__file__).parent / "promtool" / "cachedmodel-rules.test.yaml"
DASHBOARD = CHART_DIR / "dashboards" / "cachedmodel.json"
KINDS = {"ServiceMonitor": "serviceMonitor", "PodMonitor": "podMonitor", "PrometheusRule": "prometheusRule"}
API_VERSIONS = [arg for kind in KINDS for arg in ("--api-versions", f"monitoring.coreos.com/v1/{kind}")]
ALL_ON = {"metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True},
                      "dashboard": {"enabled": True}}}


def _tool(path: Path, what: str) -> Path:
    if path.exists():
        return path
    reason = f"{what} not found at {path}"
    if os.environ.get("CACHEDMODEL_REQUIRE_K8S") == "1":
        pytest.fail(f"CACHEDMODEL_REQUIRE_K8S=1 but {reason}: run `make tools`", pytrace=False)
    pytest.skip(f"{reason}: run `make tools`")


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(_tool(promtool_path(), "promtool")), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def cached_model(name: str = "insurance-charges", namespace: str = "ml") -> CachedModel:
    return CachedModel.from_body({"apiVersion": "cachedmodel.dev/v1alpha1", "kind": "CachedModel",
                                  "metadata": {"name": name, "namespace": namespace, "uid": "u"},
                                  "spec": {"model": {"image": "m:1", "classPath": "a.B"}}})


def rule_groups(values: dict | None = None) -> list[dict]:
    docs = helm_template(*API_VERSIONS, values=values or {"metrics": {"prometheusRule": {"enabled": True}}})
    return one(docs, "PrometheusRule")["spec"]["groups"]


# ------------------------------------------------------------------ rendering


def test_monitoring_is_off_by_default():
    docs = helm_template(*API_VERSIONS)
    for kind in KINDS:
        assert not find(docs, kind)
    assert [c["metadata"]["name"] for c in find(docs, "ConfigMap")] == ["rel-cachedmodel-operator"]
    settings = one(docs, "ConfigMap")["data"]
    assert settings["CACHEDMODEL_SCRAPE_SECONDS"] == "30" and settings["CACHEDMODEL_SCRAPE_TIMEOUT_SECONDS"] == "2"


@pytest.mark.parametrize("kind", KINDS)
def test_a_prometheus_operator_kind_without_its_crd_is_refused_naming_the_value(kind):
    result = helm_template_result(values={"metrics": {KINDS[kind]: {"enabled": True}}})
    assert result.returncode != 0
    assert f"metrics.{KINDS[kind]}.enabled: the cluster has no monitoring.coreos.com/v1 {kind}" in result.stderr


@pytest.mark.parametrize("values, message", [
    ({"metrics": {"prometheusRule": {"enabled": True, "errorRatio": 2}}}, "/metrics/prometheusRule/errorRatio"),
    ({"metrics": {"serviceMonitor": {"enabled": True, "interval": "soon"}}}, "/metrics/serviceMonitor/interval"),
    ({"metrics": {"dashboard": {"enabled": "yes"}}}, "/metrics/dashboard/enabled"),
    ({"metrics": {"grafana": {}}}, "additional properties 'grafana' not allowed"),
    ({"cacheStatus": {"scrapeSeconds": 2}}, "/cacheStatus/scrapeSeconds"),
])
def test_bad_monitoring_values_are_refused(values, message):
    result = helm_template_result(*API_VERSIONS, values=values)
    assert result.returncode != 0 and message in result.stderr, result.stderr


@pytest.mark.parametrize("kind", ["ServiceMonitor", "PodMonitor"])
def test_the_monitors_select_the_model_services_and_pods_the_operator_makes(kind):
    cm = cached_model()
    service, deployment = builders.model_service(cm), builders.model_deployment(cm, "sum")
    redis = [builders.redis_service(cm), builders.redis_headless_service(cm)]
    monitor = one(helm_template(*API_VERSIONS, values={"metrics": {KINDS[kind]: {"enabled": True,
                                                                                "labels": {"release": "kps"}}}}), kind)
    selector = monitor["spec"]["selector"]["matchLabels"]
    target = service["metadata"]["labels"] if kind == "ServiceMonitor" else \
        deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= target.items(), "the monitor does not select what the operator makes"
    for other in redis:
        assert not selector.items() <= other["metadata"]["labels"].items(), "Redis (no exporter) selected"
    endpoint = (monitor["spec"].get("endpoints") or monitor["spec"].get("podMetricsEndpoints"))[0]
    assert endpoint["path"] == model_builder.METRICS_PATH == deployment["spec"]["template"]["metadata"][
        "annotations"]["prometheus.io/path"]
    ports = {p["name"] for p in service["spec"]["ports"]} if kind == "ServiceMonitor" else \
        {p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert endpoint["port"] in ports
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    assert monitor["metadata"]["labels"]["release"] == "kps" and monitor["metadata"]["namespace"] == "ops"
    watched = one(helm_template(*API_VERSIONS, values={"watchNamespaces": ["a", "b"],
                                                       "metrics": {KINDS[kind]: {"enabled": True}}}), kind)
    assert watched["spec"]["namespaceSelector"] == {"matchNames": ["a", "b"]}


def test_the_model_service_carries_the_scrape_annotations_and_redis_says_no():
    cm = cached_model()
    annotations = builders.model_service(cm)["metadata"]["annotations"]
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": "8000", "prometheus.io/path": "/metrics"}
    for service in (builders.redis_service(cm), builders.redis_headless_service(cm)):
        assert service["metadata"]["annotations"] == {"prometheus.io/scrape": "false"}


def test_the_dashboard_configmap_is_the_json_in_the_sidecar_format():
    values = {"metrics": {"dashboard": {"enabled": True, "namespace": "monitoring",
                                        "annotations": {"grafana_folder": "CachedModel"}}}}
    config = one(helm_template(values=values), "ConfigMap", "rel-cachedmodel-operator-dashboard")
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config["metadata"]["namespace"] == "monitoring"
    assert config["metadata"]["annotations"] == {"grafana_folder": "CachedModel"}
    assert json.loads(config["data"]["cachedmodel.json"]) == json.loads(DASHBOARD.read_text())


# ------------------------------------------------------------------ promtool


def test_the_alert_rules_pass_promtool_check_and_their_unit_tests(tmp_path):
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups()}, sort_keys=False))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    checked = promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 4 rules found" in checked.stdout + checked.stderr
    tested = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    alerts = {rule["alert"] for group in rule_groups() for rule in group["rules"]}
    assert alerts == {"CachedModelHitRatioCollapsed", "CachedModelCircuitOpen", "CachedModelRedisMemoryFull",
                      "CachedModelCacheErrors"}
    tested_alerts = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    assert tested_alerts == alerts, "every alert has a promtool test"


def test_the_rule_tests_fail_when_a_threshold_moves(tmp_path):
    """The unit tests see the thresholds: an error alert at 50% no longer fires on 10% errors."""
    loose = rule_groups({"metrics": {"prometheusRule": {"enabled": True, "errorRatio": 0.5}}})
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": loose}, sort_keys=False))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    tested = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert tested.returncode != 0 and "CachedModelCacheErrors" in tested.stdout + tested.stderr


def test_the_rules_read_only_exported_series():
    names, labels = exported_series()
    problems = []
    for group in rule_groups():
        for rule in group["rules"]:
            used, used_labels = used_series(rule["expr"])
            problems += [f"{rule['alert']}: {n}" for n in sorted(used - names)]
            problems += [f"{rule['alert']}: label {n}" for n in sorted(used_labels - labels - TARGET_LABELS)]
    assert not problems, problems


def test_the_dashboard_queries_are_valid_promql(tmp_path):
    """promtool parses each panel query (Grafana's variables replaced) as a recording rule."""
    board = json.loads(DASHBOARD.read_text())
    rules = []
    for panel in board["panels"]:
        for target in panel["targets"]:
            expr = (target["expr"].replace("$__rate_interval", "5m").replace("$__range", "6h")
                    .replace("$namespace", ".*").replace("$model", ".*"))
            rules.append({"record": f"dashboard:panel{panel['id']}:{target['refId'].lower()}", "expr": expr})
    (tmp_path / "dashboard.yaml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = promtool("check", "rules", "--lint=none", "dashboard.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


# ------------------------------------------------------------------ the real API server, the real CRDs


@pytest.fixture
def prometheus_operator_crds(kube_cluster):
    """The Prometheus Operator's own ServiceMonitor, PodMonitor and PrometheusRule CRDs (removed afterwards
    unless they were there before)."""
    directory = prometheus_operator_crds_dir()
    files = [directory / f"monitoring.coreos.com_{plural}.yaml" for plural in PROMETHEUS_OPERATOR_CRDS]
    for path in files:
        _tool(path, "the Prometheus Operator CRDs")
    names = [f"{plural}.monitoring.coreos.com" for plural in PROMETHEUS_OPERATOR_CRDS]
    existed = {name for name in names if get_json(kube_cluster, "crd", name) is not None}
    for path in files:
        kube_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path), timeout=120)
    for name in names:
        wait_until(lambda: crd_established(kube_cluster, name), 60, what=f"CRD {name} Established")
    yield names
    for name in names:
        if name not in existed:
            kube_cluster.kubectl("delete", "crd", name, "--ignore-not-found", check=False, timeout=120)


def test_helm_installs_the_monitoring_objects_where_the_crds_are_served(kube_cluster, k8s_namespace,
                                                                         prometheus_operator_crds):
    """helm sees the cluster's kinds (no --api-versions): the real CRDs' schemas accept every object."""
    release = f"mon-{uuid.uuid4().hex[:6]}"
    args = ["--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.prometheusRule.enabled=true",
            "--set", "metrics.dashboard.enabled=true"]
    try:
        kube_cluster.helm("install", release, str(CHART_DIR), "-n", k8s_namespace, *args, timeout=180)
        fullname = f"{release}-cachedmodel-operator"
        monitor = get_json(kube_cluster, "servicemonitor", f"{fullname}-models", "-n", k8s_namespace)
        assert monitor and monitor["spec"]["namespaceSelector"] == {"any": True}
        rule = get_json(kube_cluster, "prometheusrule", f"{fullname}-cache", "-n", k8s_namespace)
        assert rule and [g["name"] for g in rule["spec"]["groups"]] == ["cachedmodel.cache"]
        assert get_json(kube_cluster, "configmap", f"{fullname}-dashboard", "-n", k8s_namespace)
        # and the PodMonitor instead of the ServiceMonitor, on upgrade
        kube_cluster.helm("upgrade", release, str(CHART_DIR), "-n", k8s_namespace, "--reuse-values",
                          "--set", "metrics.serviceMonitor.enabled=false", "--set", "metrics.podMonitor.enabled=true",
                          timeout=180)
        assert get_json(kube_cluster, "podmonitor", f"{fullname}-models", "-n", k8s_namespace)
        assert get_json(kube_cluster, "servicemonitor", f"{fullname}-models", "-n", k8s_namespace) is None
    finally:
        kube_cluster.helm("uninstall", release, "-n", k8s_namespace, "--wait", "--timeout", "2m", check=False,
                          timeout=180)
