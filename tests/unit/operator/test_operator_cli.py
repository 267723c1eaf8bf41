"""`cachedmodel-operator render` as a user runs it: manifests on stdout, field-level errors and exit 1."""
import subprocess
import sys

import kubernetes_validate
import pytest
import yaml

from cachedmodel_operator import cli

GOOD = """\
apiVersion: cachedmodel.dev/v1alpha1
kind: CachedModel
metadata: {name: insurance-charges}
spec:
  model:
    image: cachedmodel/insurance-charges-model:0.1.0
    classPath: insurance_charges_model.model.InsuranceChargesModel
    replicas: 2
  cache: {ttlSeconds: 600, hashingFields: [age, bmi]}
  redis: {maxmemory: 128mb, maxmemoryPolicy: allkeys-lfu}
"""


def run(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "cachedmodel_operator.cli", *args], input=stdin,
                          capture_output=True, text=True, timeout=60)


def test_render_prints_valid_manifests(tmp_path):
    path = tmp_path / "cm.yaml"
    path.write_text(GOOD)
    result = run("render", "-f", str(path), "-n", "ml")
    assert result.returncode == 0, result.stderr
    docs = list(yaml.safe_load_all(result.stdout))
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(["Secret", "ConfigMap", "ConfigMap", "Service", "Service", "Service", "StatefulSet",
                            "NetworkPolicy", "PodDisruptionBudget", "Deployment"])
    for doc in docs:
        assert doc["metadata"]["namespace"] == "ml"
        assert "ownerReferences" not in doc["metadata"], "no uid without a cluster"
        kubernetes_validate.validate(doc, "1.34", strict=True)
    conf = next(d for d in docs if d["metadata"]["name"] == "insurance-charges-redis-config")
    assert "maxmemory 128mb" in conf["data"]["redis.conf"]


@pytest.mark.parametrize("mode,statefulsets,services", [
    ("sentinel", {"insurance-charges-redis": 3, "insurance-charges-redis-sentinel": 3},
     {"insurance-charges", "insurance-charges-redis-headless", "insurance-charges-redis-sentinel"}),
    ("cluster", {"insurance-charges-redis": 6}, {"insurance-charges", "insurance-charges-redis-headless"}),
])
def test_render_each_mode(mode, statefulsets, services):
    result = run("render", "-f", "-", "-n", "ml", stdin=GOOD.replace("maxmemory: 128mb,", f"mode: {mode}, maxmemory: 128mb,"))
    assert result.returncode == 0, result.stderr
    docs = list(yaml.safe_load_all(result.stdout))
    for doc in docs:
        kubernetes_validate.validate(doc, "1.34", strict=True)
    assert {d["metadata"]["name"]: d["spec"]["replicas"] for d in docs if d["kind"] == "StatefulSet"} == statefulsets
    assert {d["metadata"]["name"] for d in docs if d["kind"] == "Service"} == services


def test_render_from_stdin_defaults_the_namespace():
    result = run("render", "-f", "-", stdin=GOOD)
    assert result.returncode == 0, result.stderr
    assert {d["metadata"]["namespace"] for d in yaml.safe_load_all(result.stdout)} == {"default"}


@pytest.mark.parametrize("edit,field", [
    (("maxmemory: 128mb", "maxmemory: 128 megs"), "spec.redis.maxmemory"),
    (("allkeys-lfu", "lfu"), "spec.redis.maxmemoryPolicy"),
    (("replicas: 2", "replicas: two"), "spec.model.replicas"),
    (("hashingFields: [age, bmi]", "hashingFields: [age, age]"), "spec.cache.hashingFields[1]"),
    (("maxmemory: 128mb,", "mode: sentinels, maxmemory: 128mb,"), "spec.redis.mode"),
    (("maxmemory: 128mb,", "mode: cluster, cluster: {shards: 2}, maxmemory: 128mb,"), "spec.redis.cluster.shards"),
    (("maxmemory: 128mb,", "cluster: {shards: 3}, maxmemory: 128mb,"), "spec.redis.cluster"),
    (("redis: {maxmemory: 128mb, maxmemoryPolicy: allkeys-lfu}", "redis: {external: {sentinels: ['s:26379']}}"),
     "spec.redis.external.sentinelService"),
    (("redis: {maxmemory: 128mb, maxmemoryPolicy: allkeys-lfu}",
      "redis: {external: {url: 'redis://c:6379', clusterNodes: ['c:6379']}}"), "spec.redis.external"),
    (("redis: {maxmemory: 128mb, maxmemoryPolicy: allkeys-lfu}", "redis: {external: {clusterNodes: [c]}}"),
     "spec.redis.external.clusterNodes[0]"),
])
def test_render_refuses_bad_input_naming_the_field(tmp_path, edit, field):
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace(*edit))
    result = run("render", "-f", str(path))
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"{path}: {field}:" in result.stderr


def test_render_missing_file_and_bad_yaml(tmp_path):
    assert run("render", "-f", str(tmp_path / "nope.yaml")).returncode == 2
    path = tmp_path / "broken.yaml"
    path.write_text("spec: [unclosed")
    result = run("render", "-f", str(path))
    assert result.returncode == 1 and "not valid YAML" in result.stderr


def test_render_text_multiple_documents():
    text = GOOD + "---\n" + GOOD.replace("name: insurance-charges", "name: second")
    docs = list(yaml.safe_load_all(cli.render_text(text)))
    assert {d["metadata"]["labels"]["app.kubernetes.io/instance"] for d in docs} == {"insurance-charges", "second"}


def test_watched_namespaces():
    parser = cli.build_parser()
    assert cli.watched_namespaces(parser.parse_args(["run"]), {"WATCH_NAMESPACES": "a, b,"}) == ["a", "b"]
    assert cli.watched_namespaces(parser.parse_args(["run", "-n", "x", "-n", "y"]), {"WATCH_NAMESPACES": "a"}) == ["x", "y"]
    assert cli.watched_namespaces(parser.parse_args(["run", "-A"]), {"WATCH_NAMESPACES": "a"}) == []
    assert cli.watched_namespaces(parser.parse_args(["run"]), {}) == []


def test_render_into_a_closed_pipe_has_no_traceback(tmp_path):
    """`render -f x | head -1`: the reader goes away; render must not print a BrokenPipeError traceback."""
    path = tmp_path / "cm.yaml"
    path.write_text(GOOD)
    process = subprocess.Popen([sys.executable, "-m", "cachedmodel_operator.cli", "render", "-f", str(path)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # before the child has written anything (it is still importing)
    _, stderr = process.communicate(timeout=60)
    assert "Traceback" not in stderr.decode() and process.returncode != 0, stderr.decode()


@pytest.mark.parametrize("raised,code", [(RuntimeError("boom"), 70), (KeyboardInterrupt(), 130)])
def test_render_bug_gives_one_line_not_a_traceback(tmp_path, monkeypatch, capsys, raised, code):
    """A bug in render (not in the file) still ends in one `error:` line, so users never see a traceback."""
    path = tmp_path / "cm.yaml"
    path.write_text(GOOD)

    def broken(*args, **kwargs):
        raise raised

    monkeypatch.setattr(cli, "render_all", broken)
    try:
        returned = cli.main(["render", "-f", str(path)])
    except BaseException as escaped:  # noqa: B036 - a KeyboardInterrupt would stop the whole test run
        pytest.fail(f"{type(escaped).__name__} escaped from main()")
    assert returned == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if code == 70:
        assert err.startswith("error: render failed unexpectedly (RuntimeError: boom)") and err.count("\n") == 1


def test_render_errors_are_one_line_each(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace("replicas: 2", "replicas: two\n    port: 1").replace("lfu", "lfx"))
    result = run("render", "-f", str(path))
    lines = result.stderr.splitlines()
    assert result.returncode == 1 and len(lines) == 3, result.stderr
    assert all(line.startswith(f"error: {path}: spec.") for line in lines), result.stderr
