"""`cachedmodel-operator render` fed hostile files: each is refused like admission would refuse it.

Every case runs the real CLI in a subprocess with a timeout and a 1 GiB address-space limit, and
must exit non-zero with short `error:` lines on stderr, the first naming the field (or the file-level
problem), nothing on stdout and no traceback. Good files next to them must still render.
"""
from __future__ import annotations

import codecs
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
MEMORY_LIMIT = 1 << 30  # bytes of address space for the render subprocess
TIMEOUT = 60  # seconds; generous because the test machines are shared

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
NAME_LINE = "  name: insurance-charges\n"
IMAGE_LINE = "    image: cachedmodel/insurance-charges-model:0.1.0\n"


def meta(lines: str) -> str:
    """BASE with its metadata body replaced by `lines` (each indented by two spaces)."""
    return BASE.replace(NAME_LINE, lines)


def model(lines: str) -> str:
    """BASE with `lines` added under spec.model (indented by four spaces)."""
    return BASE + lines


def spec(lines: str) -> str:
    """BASE with `lines` added under spec (indented by two spaces)."""
    return BASE + lines


def nested(depth: int, open_: str, close: str, leaf: str = "1") -> str:
    return open_ * depth + leaf + close * depth


BILLION_LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)) + BASE

# the same bomb where the schema takes anything (valueFrom keeps unknown fields): it validates, and the
# expansion happens when the manifests are written
BOMB_IN_VALUE_FROM = model("    env:\n    - name: A\n      valueFrom:\n" + "".join(
    f"        {line}" for line in BILLION_LAUGHS.split(BASE)[0].splitlines(keepends=True)))

# (id, file content (str = UTF-8 text, bytes = as is), extra CLI args, text the first stderr line must contain)
CASES = [
    # -- not a CachedModel at all
    ("empty-file", "", [], "no CachedModel"),
    ("only-comments", "# nothing here\n", [], "no CachedModel"),
    ("only-separators", "---\n---\n...\n", [], "no CachedModel"),
    ("root-list", "- a\n- b\n", [], "<root>"),
    ("root-scalar", "just words\n", [], "<root>"),
    ("root-int", "42\n", [], "<root>"),
    ("apiversion-wrong", BASE.replace("cachedmodel.dev/v1alpha1", "v1"), [], "apiVersion"),
    ("apiversion-missing", BASE.replace("apiVersion: cachedmodel.dev/v1alpha1\n", ""), [], "apiVersion"),
    ("apiversion-int", BASE.replace("apiVersion: cachedmodel.dev/v1alpha1", "apiVersion: 1"), [], "apiVersion"),
    ("kind-wrong", BASE.replace("kind: CachedModel", "kind: Deployment"), [], "kind"),
    ("kind-list", BASE.replace("kind: CachedModel", "kind: [CachedModel]"), [], "kind"),
    ("second-document-bad", BASE + "---\n" + BASE.replace(IMAGE_LINE, ""), [], "(document 2): spec.model.image"),
    ("too-many-documents", "---\n".join([BASE] * 101), [], "documents"),
    # -- wrong types at every level
    ("metadata-list", BASE.replace("metadata:\n" + NAME_LINE, "metadata: [insurance-charges]\n"), [], "metadata"),
    ("metadata-string", BASE.replace("metadata:\n" + NAME_LINE, "metadata: insurance-charges\n"), [], "metadata"),
    ("name-int", meta("  name: 123\n"), [], "metadata.name"),
    ("name-list", meta("  name: [insurance-charges]\n"), [], "metadata.name"),
    ("name-null", meta("  name: ~\n"), [], "metadata.name"),
    ("name-bool", meta("  name: yes\n"), [], "metadata.name"),
    ("spec-list", BASE.split("spec:")[0] + "spec: []\n", [], "spec"),
    ("spec-missing", BASE.split("spec:")[0], [], "spec"),
    ("model-string", BASE.split("  model:")[0] + "  model: insurance\n", [], "spec.model"),
    ("image-int", BASE.replace(IMAGE_LINE, "    image: 5\n"), [], "spec.model.image"),
    ("replicas-bool", model("    replicas: true\n"), [], "spec.model.replicas"),
    ("replicas-nan", model("    replicas: .nan\n"), [], "spec.model.replicas"),
    ("replicas-5000-digits", model("    replicas: " + "9" * 5000 + "\n"), [], "spec.model.replicas"),
    ("port-float", model("    port: 8000.5\n"), [], "spec.model.port"),
    ("env-map", model("    env: {A: b}\n"), [], "spec.model.env"),
    ("env-item-string", model("    env: [A]\n"), [], "spec.model.env[0]"),
    ("env-name-int", model("    env: [{name: 1, value: x}]\n"), [], "spec.model.env[0].name"),
    ("env-value-int", model("    env: [{name: A, value: 1}]\n"), [], "spec.model.env[0].value"),
    ("limits-list", model("    resources: {limits: [1]}\n"), [], "spec.model.resources.limits"),
    ("cache-list", spec("  cache: []\n"), [], "spec.cache"),
    ("enabled-string", spec("  cache: {enabled: 'yes'}\n"), [], "spec.cache.enabled"),
    ("hashing-fields-nested-list", spec("  cache: {hashingFields: [[age]]}\n"), [], "spec.cache.hashingFields[0]"),
    ("redis-string", spec("  redis: big\n"), [], "spec.redis"),
    ("external-string", spec("  redis: {external: here}\n"), [], "spec.redis.external"),
    ("int-key", spec("  1: one\n"), [], "spec"),
    ("null-key", BASE + "~: nothing\n", [], "<root>"),
    # -- unknown fields: kubectl's default (--validate=strict) makes the API server refuse them
    ("unknown-root-field", BASE + "extra: 1\n", [], "extra"),
    ("unknown-model-field", model("    imagee: x\n"), [], "spec.model.imagee"),
    ("unknown-metadata-field", meta(NAME_LINE + "  labelz: {a: b}\n"), [], "metadata.labelz"),
    ("escape-in-unknown-key", model('    "\\e[31mred": x\n'), [], "spec.model["),
    # -- names (the CRD's CEL rule: DNS-1035 label of at most 40, so <name>-redis-headless fits in 63)
    ("name-uppercase", meta("  name: Insurance\n"), [], "metadata.name"),
    ("name-dotted", meta("  name: insurance.charges\n"), [], "metadata.name"),
    ("name-41", meta(f"  name: {'a' * 41}\n"), [], "metadata.name"),
    ("name-empty", meta("  name: ''\n"), [], "metadata.name"),
    ("name-missing", meta("  labels: {a: b}\n"), [], "metadata.name"),
    ("name-generate-only", meta("  generateName: insurance-\n"), [], "metadata.name"),
    ("name-reserved-suffix", meta("  name: shop-redis\n"), [], "metadata.name"),
    # -- namespaces (DNS-1123 label), in the file and on the command line
    ("namespace-underscore", meta(NAME_LINE + "  namespace: ml_prod\n"), [], "metadata.namespace"),
    ("namespace-dotted", meta(NAME_LINE + "  namespace: ml.prod\n"), [], "metadata.namespace"),
    ("namespace-64", meta(NAME_LINE + f"  namespace: {'n' * 64}\n"), [], "metadata.namespace"),
    ("namespace-int", meta(NAME_LINE + "  namespace: 5\n"), [], "metadata.namespace"),
    ("flag-namespace-invalid", BASE, ["-n", "Bad_NS"], "--namespace"),
    ("flag-namespace-64", BASE, ["-n", "n" * 64], "--namespace"),
    ("flag-namespace-empty", BASE, ["-n", ""], "--namespace"),
    # -- labels and annotations (Kubernetes qualified names, label values, string maps)
    ("label-key-space", meta(NAME_LINE + "  labels: {bad key: x}\n"), [], "metadata.labels"),
    ("label-key-bad-prefix", meta(NAME_LINE + "  labels: {Example.COM/app: x}\n"), [], "metadata.labels"),
    ("label-key-name-64", meta(NAME_LINE + f"  labels: {{example.com/{'k' * 64}: x}}\n"), [], "metadata.labels"),
    ("label-key-empty-name", meta(NAME_LINE + "  labels: {example.com/: x}\n"), [], "metadata.labels"),
    ("label-value-64", meta(NAME_LINE + f"  labels: {{app: {'v' * 64}}}\n"), [], "metadata.labels"),
    ("label-value-space", meta(NAME_LINE + "  labels: {app: 'a b'}\n"), [], "metadata.labels"),
    ("label-value-int", meta(NAME_LINE + "  labels: {app: 1}\n"), [], "metadata.labels"),
    ("labels-list", meta(NAME_LINE + "  labels: [app]\n"), [], "metadata.labels"),
    ("annotation-int", meta(NAME_LINE + "  annotations: {note: 1}\n"), [], "metadata.annotations"),
    ("annotation-bool", meta(NAME_LINE + "  annotations: {note: true}\n"), [], "metadata.annotations"),
    ("annotation-map", meta(NAME_LINE + "  annotations: {note: {a: b}}\n"), [], "metadata.annotations"),
    ("annotation-key-invalid", meta(NAME_LINE + "  annotations: {'a b': x}\n"), [], "metadata.annotations"),
    ("annotations-over-256k", meta(NAME_LINE + f"  annotations: {{note: {'x' * (256 * 1024)}}}\n"), [],
     "metadata.annotations"),
    ("finalizers-string", meta(NAME_LINE + "  finalizers: keep\n"), [], "metadata.finalizers"),
    # -- duplicate keys at any depth (kubectl's strict field validation refuses them)
    ("duplicate-root-key", BASE + "spec: {}\n", [], "spec"),
    ("duplicate-metadata-name", meta(NAME_LINE + "  name: other\n"), [], "metadata.name"),
    ("duplicate-model-image", model("    image: other:1\n"), [], "spec.model.image"),
    ("duplicate-label", meta(NAME_LINE + "  labels:\n    app: a\n    app: b\n"), [], "metadata.labels.app"),
    ("duplicate-in-flow-map", spec("  cache: {ttlSeconds: 1, ttlSeconds: 2}\n"), [], "spec.cache.ttlSeconds"),
    ("duplicate-differently-quoted", model('    "image": other:1\n'), [], "spec.model.image"),
    # -- encodings and binary
    ("utf16-le-bom", codecs.BOM_UTF16_LE + BASE.encode("utf-16-le"), [], "UTF-16"),
    ("utf16-be-bom", codecs.BOM_UTF16_BE + BASE.encode("utf-16-be"), [], "UTF-16"),
    ("utf16-le-no-bom", BASE.encode("utf-16-le"), [], "UTF-8"),
    ("utf32-le-bom", codecs.BOM_UTF32_LE + BASE.encode("utf-32-le"), [], "UTF-32"),
    ("latin1-byte", BASE.replace("insurance-charges-model", "assurance-\xe9").encode("latin-1"), [], "UTF-8"),
    ("binary-bytes", bytes(range(256)) * 4, [], "UTF-8"),
    ("control-character", BASE.replace("0.1.0", "0.1.0\x07"), [], "line 7"),
    ("tab-indentation", BASE.replace("    image:", "\timage:"), [], "line"),
    ("unclosed-flow", BASE + "status: [unclosed\n", [], "line"),
    # -- deep nesting (the YAML composer recurses; the limit comes before it can blow the stack)
    ("deep-flow-lists", spec("  cache: " + nested(10_000, "[", "]") + "\n"), [], "nested deeper"),
    ("deep-flow-maps", spec("  cache: " + nested(10_000, "{a: ", "}") + "\n"), [], "nested deeper"),
    ("deep-block-maps", spec("".join(f"{'  ' * (i + 1)}a{i}:\n" for i in range(300)) + "  " * 301 + "x\n"), [],
     "nested deeper"),
    ("deep-in-preserved-field", model("    env: [{name: A, valueFrom: " + nested(60, "{a: ", "}") + "}]\n"), [],
     "nested deeper"),
    # -- aliases: refused outright, so no expansion bomb can be built
    ("billion-laughs", BILLION_LAUGHS, [], "alias"),
    ("billion-laughs-in-preserved-field", BOMB_IN_VALUE_FROM, [], "spec.model.env[0].valueFrom"),
    ("plain-alias", BASE.replace(IMAGE_LINE, "    image: &img x:1\n    classPath: *img\n", 1)
     .replace("    classPath: insurance_charges_model.model.InsuranceChargesModel\n", ""), [], "alias"),
    ("merge-key", "base: &b {replicas: 2}\n" + model("    <<: *b\n"), [], "merge key"),
    # -- tags that are not JSON
    ("binary-tag", BASE.replace(IMAGE_LINE, "    image: !!binary aGVsbG8=\n"), [], "spec.model.image"),
    ("python-tag", BASE.replace(IMAGE_LINE, "    image: !!python/object:os.system x\n"), [], "line"),
    ("set-tag", spec("  cache: {hashingFields: !!set {age: null}}\n"), [], "spec.cache.hashingFields"),
    ("custom-tag", BASE.replace(IMAGE_LINE, "    image: !Ref img\n"), [], "line"),
    # -- huge inputs
    ("image-2mib", BASE.replace(IMAGE_LINE, f"    image: {'x' * (2 << 20)}\n"), [], "spec.model.image"),
    ("file-over-limit", BASE + "#" * (4 << 20) + "\n", [], "larger than"),
    ("10000-unknown-fields", spec("".join(f"  field{i}: {i}\n" for i in range(10_000))), [], "spec.field"),
    ("too-many-nodes", spec("  cache: {hashingFields: [" + ",".join(["a"] * 300_000) + "]}\n"), [], "nodes"),
    ("hashing-fields-20000", spec("  cache: {hashingFields: [" + ",".join(["a"] * 20_000) + "]}\n"), [],
     "spec.cache.hashingFields"),
]


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def render(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """Run the CLI like a user, under a memory limit; output decoded leniently (it must be UTF-8 anyway)."""
    result = subprocess.run([sys.executable, "-m", "cachedmodel_operator.cli", "render", *args], input=stdin,
                            capture_output=True, timeout=TIMEOUT, preexec_fn=_limit_memory)
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode("utf-8", "replace"),
                                       result.stderr.decode("utf-8", "replace"))


def assert_refused(result: subprocess.CompletedProcess, expected: str) -> None:
    """Non-zero exit, nothing on stdout, a few short `error:` lines, the first naming `expected`."""
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.returncode != 0, result.stdout[:500]
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines, "no message"
    assert all(line.startswith("error: ") for line in lines), result.stderr[:3000]
    assert expected in lines[0], result.stderr[:3000]
    assert len(lines) <= 21 and len(result.stderr) < 8000, f"{len(lines)} lines, {len(result.stderr)} chars"
    assert "\x1b" not in result.stderr, "terminal escapes from the file must not reach the terminal"


@pytest.mark.parametrize("content,args,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_file_is_refused_naming_the_field(tmp_path, content, args, expected):
    path = tmp_path / "cm.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    assert_refused(render("-f", str(path), *args), expected)


def test_case_ids_are_unique():
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("content,expected", [
    (codecs.BOM_UTF16_LE + BASE.encode("utf-16-le"), "UTF-16"),
    (BASE.replace("insurance-charges-model", "assurance-\xe9").encode("latin-1"), "UTF-8"),
    (BILLION_LAUGHS.encode(), "alias"),
], ids=["utf16", "latin1", "billion-laughs"])
def test_hostile_stdin_is_refused(content, expected):
    """stdin is read as bytes and decoded by the same rules as a file (not by the locale's codec)."""
    result = render("-f", "-", stdin=content)
    assert_refused(result, expected)
    assert "<stdin>" in result.stderr


def test_directory_and_missing_file(tmp_path):
    for path, reason in [(tmp_path, "directory"), (tmp_path / "nope.yaml", "No such file")]:
        result = render("-f", str(path))
        assert_refused(result, reason)
        assert result.returncode == 2


# -- good files keep working: the shipped example, the README's, and the shapes real files take
KUBECTL_GET_OUTPUT = """\
apiVersion: cachedmodel.dev/v1alpha1
kind: CachedModel
metadata:
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: |
      {"apiVersion":"cachedmodel.dev/v1alpha1","kind":"CachedModel"}
    note: ~
  creationTimestamp: 2026-01-01T10:00:00Z
  finalizers: [cachedmodel.dev/cleanup]
  generation: 2
  labels: {app.kubernetes.io/name: insurance-charges, example.com/tier: gold, empty: ""}
  managedFields:
  - {apiVersion: cachedmodel.dev/v1alpha1, fieldsType: FieldsV1, manager: kubectl, operation: Update}
  name: insurance-charges
  namespace: ml
  resourceVersion: "1234"
  uid: 0d2c8a4e-0000-4000-8000-000000000000
spec:
  model:
    image: cachedmodel/insurance-charges-model:0.1.0
    classPath: insurance_charges_model.model.InsuranceChargesModel
status:
  observedGeneration: 2
  conditions:
  - {type: Ready, status: "True", lastTransitionTime: 2026-01-01T10:00:05Z}
"""


def readme_sample() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("```yaml\napiVersion: cachedmodel.dev/v1alpha1\nkind: CachedModel")
    return text[start + len("```yaml\n"):text.index("```", start + 7)]


# JSON (what kubectl sends) has no timestamps and no YAML 1.1 value key: these are plain strings there
TIMESTAMPS = (BASE.replace(IMAGE_LINE, "    image: 2026-01-01\n")
              + "    env: [{name: A, value: =}, {name: B, value: 2026-01-01 10:00:00}]\n")

GOOD = [
    ("manifests-example", (ROOT / "manifests/examples/insurance-charges.yaml").read_bytes()),
    ("readme-sample", readme_sample().encode()),
    ("base", BASE.encode()),
    ("utf8-bom", codecs.BOM_UTF8 + BASE.encode()),
    ("crlf", BASE.replace("\n", "\r\n").encode()),
    ("kubectl-get-output", KUBECTL_GET_OUTPUT.encode()),
    ("two-documents", (BASE + "---\n" + BASE.replace("name: insurance-charges", "name: second")).encode()),
    ("unicode-comment", ("# Modèle d'assurance — ünïcode ✓\n" + BASE).encode()),
    ("status-is-ignored", (BASE + "status: []\n").encode()),  # the API server drops status on create/update
    ("timestamp-and-equals-are-strings", TIMESTAMPS.encode()),
    ("anchor-without-alias", BASE.replace(IMAGE_LINE, "    image: &img cachedmodel/x:1\n").encode()),
]


@pytest.mark.parametrize("content", [g[1] for g in GOOD], ids=[g[0] for g in GOOD])
def test_good_file_renders(tmp_path, content):
    path = tmp_path / "cm.yaml"
    path.write_bytes(content)
    result = render("-f", str(path), "-n", "ml")
    assert result.returncode == 0, result.stderr
    docs = list(yaml.safe_load_all(result.stdout))
    assert docs and all(doc["metadata"]["namespace"] == "ml" for doc in docs)


def test_children_of_the_longest_allowed_name_are_valid_names(tmp_path):
    """The CRD caps metadata.name at 40 so that every derived name stays valid: `<name>-redis-headless` (55) is a
    Service name (DNS-1035, at most 63) and the StatefulSet `<name>-redis` leaves room for the 11 characters of the
    `controller-revision-hash` label value (`<statefulset>-<hash>`, at most 63)."""
    import re

    dns_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
    label_value = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
    path = tmp_path / "cm.yaml"
    path.write_text(meta(f"  name: {'a' * 40}\n"))
    result = render("-f", str(path), "-n", "n" * 63)
    assert result.returncode == 0, result.stderr
    for doc in yaml.safe_load_all(result.stdout):
        name = doc["metadata"]["name"]
        assert dns_1035.match(name) and len(name) <= 63, name
        if doc["kind"] == "StatefulSet":
            assert len(name) + 11 <= 63, name
        labels = {**doc["metadata"].get("labels", {}),
                  **doc.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {})}
        for value in labels.values():
            assert len(value) <= 63 and label_value.match(value), (name, value)


def test_timestamps_and_equals_stay_strings(tmp_path):
    path = tmp_path / "cm.yaml"
    path.write_text(TIMESTAMPS)
    result = render("-f", str(path))
    assert result.returncode == 0, result.stderr
    (deployment,) = [d for d in yaml.safe_load_all(result.stdout) if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "2026-01-01"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["A"] == "=" and env["B"] == "2026-01-01 10:00:00"
