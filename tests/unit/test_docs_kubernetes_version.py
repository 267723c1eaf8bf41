"""The Kubernetes versions the docs state are the ones the tests run: the kube-apiserver `make tools` builds
(scripts/build_tools.py K8S_VERSION), the kind node of kind-config.yaml, and the chart's kubeVersion floor; no
untested "Kubernetes 1.xx+" claim."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DEPLOYING = ROOT / "docs" / "deploying.md"


def prose(path: Path) -> str:
    """The document's text with every run of whitespace one space (a phrase may wrap)."""
    return " ".join(path.read_text(encoding="utf-8").split())


def k8s_version() -> str:
    """The pinned version, read from the build script's text (it is not a package)."""
    return re.search(r'^K8S_VERSION = "(v[0-9.]+)"', (ROOT / "scripts" / "build_tools.py").read_text(),
                     re.MULTILINE).group(1)


def minor(version: str) -> str:
    return ".".join(version.removeprefix("v").split(".")[:2])


def test_the_docs_say_which_kubernetes_the_tests_run():
    tested = f"Tested with Kubernetes {minor(k8s_version())}"
    for path in (README, DEPLOYING):
        assert tested in prose(path), f"{path.name} lacks {tested!r}"
    deploying = prose(DEPLOYING)
    assert f"kube-apiserver {k8s_version()}" in deploying
    kind_node = yaml.safe_load((ROOT / "kind-config.yaml").read_text())["nodes"][0]["image"]
    assert f"kind node {kind_node.split('@')[0].split(':')[1]}" in deploying


def test_the_chart_floor_is_the_one_the_docs_name():
    chart = yaml.safe_load((ROOT / "charts" / "cachedmodel-operator" / "Chart.yaml").read_text())
    floor = minor(re.match(r">=\s*([0-9.]+)", chart["kubeVersion"]).group(1))
    assert f"`kubeVersion` admits {floor} and later" in prose(DEPLOYING)


def test_no_untested_version_floor_is_claimed():
    for path in (README, *sorted((ROOT / "docs").glob("*.md"))):
        claims = re.findall(r"Kubernetes 1\.\d+\+", prose(path))
        assert not claims, f"{path.name}: {claims}: say what is tested instead"
