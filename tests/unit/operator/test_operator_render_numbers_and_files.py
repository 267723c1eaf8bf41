"""`cachedmodel-operator render` (issue 19, item 6): numbers as the API server reads them (no NaN or
infinity anywhere, whole floats are integers where the schema wants one, 1e12 is out of range), several
-f like kubectl, and the generated Redis password said once on stderr, with --no-secret for stable output."""
from __future__ import annotations

import re
import subprocess
import sys

import kubernetes_validate
import pytest
import yaml

from cachedmodel_operator import cli

BASE = """\
apiVersion: cachedmodel.dev/v1alpha1
kind: CachedModel
metadata:
  name: insurance-charges
spec:
  model:
    image: cachedmodel/insurance-charges-model:0.1.0
    classPath: insurance_charges_model.model.InsuranceChargesModel
"""


def run(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "cachedmodel_operator.cli", *args], input=stdin,
                          capture_output=True, text=True, timeout=60)


def model(lines: str) -> str:
    return BASE + lines


def spec(lines: str) -> str:
    return BASE + lines


def refused(result, field: str) -> str:
    """The one error line naming `field`; checks the run failed cleanly."""
    assert result.returncode == 1 and result.stdout == "" and "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if f": {field}: " in line]
    assert len(lines) == 1, result.stderr  # said once: not again as "must be an integer, got a number nan"
    return lines[0]


# ---------------------------------------------------------------- NaN and infinity, in every kind of number field
@pytest.mark.parametrize("content, field", [
    (model("    replicas: .nan\n"), "spec.model.replicas"),                       # integer
    (model("    replicas: .inf\n"), "spec.model.replicas"),
    (model("    replicas: -.inf\n"), "spec.model.replicas"),
    (model("    port: .NaN\n"), "spec.model.port"),
    (spec("  cache: {earlyRefreshBeta: .nan, staleSeconds: 60}\n"), "spec.cache.earlyRefreshBeta"),  # number
    (spec("  cache: {socketTimeoutSeconds: .inf}\n"), "spec.cache.socketTimeoutSeconds"),
    (spec("  cache: {poolTimeoutSeconds: -.Inf}\n"), "spec.cache.poolTimeoutSeconds"),
    (model("    resources: {limits: {cpu: .nan}}\n"), "spec.model.resources.limits.cpu"),  # int-or-string
    (model("    tolerations: [{key: a, operator: Exists, effect: NoExecute, tolerationSeconds: .inf}]\n"),
     "spec.model.tolerations[0].tolerationSeconds"),
    (BASE.replace("  name: insurance-charges\n", "  name: insurance-charges\n  generation: .nan\n"),
     "metadata.generation"),
])
def test_nan_and_infinity_are_refused_naming_the_field(content, field):
    line = refused(run("render", "-f", "-", stdin=content), field)
    assert "must be a finite number, got " in line and "no NaN or infinity" in line


def test_nan_passes_no_bound_unnoticed():
    """NaN compares false with everything, so a minimum/maximum check alone lets it through a number field."""
    result = run("render", "-f", "-", stdin=spec("  cache: {socketConnectTimeoutSeconds: .nan}\n"))
    assert "spec.cache.socketConnectTimeoutSeconds: must be a finite number, got .nan" in refused(
        result, "spec.cache.socketConnectTimeoutSeconds")


# ---------------------------------------------------------------- whole floats where integers go
def test_whole_floats_in_integer_fields_are_integers_in_the_manifests():
    content = model("    replicas: 2.0\n    startupTimeoutSeconds: 1.2e2\n"
                    "    tolerations: [{key: a, operator: Exists, effect: NoExecute, tolerationSeconds: 3.6e+3}]\n"
                    "    resources: {limits: {cpu: 2.0}}\n") + "  cache: {ttlSeconds: 600.0}\n"
    result = run("render", "-f", "-", "-n", "ml", stdin=content)
    assert result.returncode == 0, result.stderr
    assert not re.search(r"(?m)(?:: |- )-?[0-9]+\.0$", result.stdout)  # no `replicas: 2.0` anywhere
    docs = list(yaml.safe_load_all(result.stdout))
    for doc in docs:
        kubernetes_validate.validate(doc, "1.34", strict=True)
    deployment = next(doc for doc in docs if doc["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 2 and type(deployment["spec"]["replicas"]) is int
    pod = deployment["spec"]["template"]["spec"]
    assert pod["tolerations"][0]["tolerationSeconds"] == 3600 and type(pod["tolerations"][0]["tolerationSeconds"]) is int
    assert pod["containers"][0]["resources"]["limits"]["cpu"] == 2
    config = next(doc for doc in docs if doc["metadata"]["name"] == "insurance-charges-config")  # the service config
    assert "ttl_seconds: 600\n" in next(iter(config["data"].values()))


def test_a_fraction_in_an_integer_field_is_still_refused():
    assert "must be an integer, got a number 2.5" in refused(run("render", "-f", "-", stdin=model("    replicas: 2.5\n")),
                                                              "spec.model.replicas")


# ---------------------------------------------------------------- huge numbers: out of range, naming the bound
@pytest.mark.parametrize("value, shown", [("1e12", "1000000000000"), ("1E+12", "1000000000000"),
                                          ("1000000000000", "1000000000000"), ("1.0e+12", "1000000000000"),
                                          ("1e300", "1e+300"), ("99999999999999999999", "99999999999999999999")])
def test_a_huge_number_is_out_of_range_naming_the_field_and_the_bound(value, shown):
    line = refused(run("render", "-f", "-", stdin=model(f"    replicas: {value}\n")), "spec.model.replicas")
    assert line.endswith(f"spec.model.replicas: must be <= 100, got {shown}"), line


def test_a_huge_number_in_a_field_without_a_bound_is_out_of_range_beyond_int64():
    """kube-apiserver 1.34 takes tolerationSeconds: 1e17 (kubectl sends 100000000000000000); beyond int64 nothing."""
    toleration = "    tolerations: [{key: a, operator: Exists, effect: NoExecute, tolerationSeconds: %s}]\n"
    field = "spec.model.tolerations[0].tolerationSeconds"
    result = run("render", "-f", "-", stdin=model(toleration % "1.2345678901234567e17"))
    assert result.returncode == 0, result.stderr
    assert "tolerationSeconds: 123456789012345660\n" in result.stdout  # shortest digits (Go's), not ...664
    for value, shown in (("1e19", "1e+19"), ("9" * 20, "9" * 20), ("-1e300", "-1e+300")):
        line = refused(run("render", "-f", "-", stdin=model(toleration % value)), field)
        assert f"out of range: must be between -9223372036854775808 and 9223372036854775807 (int64), got {shown}" \
            in line, line
    assert run("render", "-f", "-", stdin=model(toleration % "9223372036854775807")).returncode == 0


def test_exponent_numbers_are_numbers_as_kubectl_reads_them():
    (document,) = cli.load_documents("a: 1e12\nb: 2.5E-3\nc: .5e1\nd: '1e12'\ne: 1e\nf: 12\n")
    assert document == {"a": 1e12, "b": 0.0025, "c": 5.0, "d": "1e12", "e": "1e", "f": 12}


# ---------------------------------------------------------------- several -f, like kubectl
def _names(stdout: str) -> list[str]:
    return [doc["metadata"]["labels"]["app.kubernetes.io/instance"] for doc in yaml.safe_load_all(stdout)]


def test_several_files_are_rendered_each_in_order(tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(BASE)
    second.write_text(BASE.replace("name: insurance-charges", "name: second") + "---\n"
                      + BASE.replace("name: insurance-charges", "name: third"))
    result = run("render", "-f", str(first), "--filename", str(second), "--no-secret")
    assert result.returncode == 0, result.stderr
    names = _names(result.stdout)
    assert set(names) == {"insurance-charges", "second", "third"}
    assert names == sorted(names, key=["insurance-charges", "second", "third"].index)  # file order, then document
    result = run("render", "-f", str(second), "-f", "-", "--no-secret", stdin=BASE)
    assert _names(result.stdout)[-1] == "insurance-charges" and _names(result.stdout)[0] == "second"


def test_a_bad_file_among_several_prints_nothing_and_names_the_file(tmp_path):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(BASE)
    bad.write_text(model("    replicas: many\n").replace("name: insurance-charges", "name: other"))
    result = run("render", "-f", str(good), "-f", str(bad))
    assert result.returncode == 1 and result.stdout == ""
    assert f"error: {bad}: spec.model.replicas: must be an integer" in result.stderr
    assert run("render", "-f", str(good), "-f", str(tmp_path / "missing.yaml")).returncode == 2


def test_the_same_cachedmodel_twice_is_refused(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text(BASE)
    result = run("render", "-f", str(path), "-f", str(path))
    assert result.returncode == 1 and result.stdout == ""
    assert (f"error: {path}: metadata.name: CachedModel default/insurance-charges is also in {path}: "
            f"their manifests would overwrite each other") in result.stderr
    other = run("render", "-f", str(path), "-f", "-", stdin=BASE.replace("  name: insurance-charges\n",
                                                                          "  name: insurance-charges\n  namespace: b\n"))
    assert other.returncode == 0, other.stderr  # the same name in another namespace is another object


def test_standard_input_twice_is_refused():
    result = run("render", "-f", "-", "-f", "-", stdin=BASE)
    assert result.returncode == 2 and "standard input can be read only once" in result.stderr


# ---------------------------------------------------------------- the generated password
def test_the_new_password_is_said_once_on_stderr_not_in_the_yaml(tmp_path):
    path = tmp_path / "two.yaml"
    path.write_text(BASE + "---\n" + BASE.replace("name: insurance-charges", "name: second"))
    result = run("render", "-f", str(path))
    assert result.returncode == 0, result.stderr
    (note,) = result.stderr.splitlines()
    assert note.startswith("note: the Secrets default/insurance-charges-redis-auth, default/second-redis-auth hold a "
                           "new random Redis password on every render")
    assert "--no-secret" in note and "kubectl create secret generic insurance-charges-redis-auth -n default" in note
    assert "note" not in result.stdout
    assert sum(doc["kind"] == "Secret" for doc in yaml.safe_load_all(result.stdout)) == 2


def test_no_secret_gives_the_same_output_on_every_run(tmp_path):
    path = tmp_path / "cm.yaml"
    path.write_text(BASE)
    with_secret = [run("render", "-f", str(path)) for _ in range(2)]
    assert with_secret[0].stdout != with_secret[1].stdout  # a new password each time
    stable = [run("render", "-f", str(path), "--no-secret") for _ in range(2)]
    assert stable[0].returncode == 0 and stable[0].stdout == stable[1].stdout and stable[0].stderr == ""
    docs = list(yaml.safe_load_all(stable[0].stdout))
    assert "Secret" not in {doc["kind"] for doc in docs}
    without = [doc for doc in yaml.safe_load_all(with_secret[0].stdout) if doc["kind"] != "Secret"]
    assert without == docs  # only the Secret is left out; everything still reads <name>-redis-auth
    assert "insurance-charges-redis-auth" in stable[0].stdout


def test_no_secret_with_external_redis_says_nothing():
    external = BASE + "  redis: {external: {url: 'redis://cache:6379/0'}}\n"
    result = run("render", "-f", "-", stdin=external)
    assert result.returncode == 0 and result.stderr == "", result.stderr
