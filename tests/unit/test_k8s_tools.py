"""Pure parts of `make tools` (scripts/build_tools.py) and of the control-plane fixture."""
from __future__ import annotations

from pathlib import Path

import pytest

from scripts import build_tools
from cachedmodel_operator.testing.control_plane import kubeconfig_document, kwok_node, server_of

KUBERNETES_GOMOD = """module k8s.io/kubernetes

go 1.24.0

require (
\tk8s.io/api v0.0.0
\tk8s.io/client-go v0.0.0
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
\tk8s.io/kube-openapi => k8s.io/kube-openapi v0.0.0-2025
)
"""


def test_staging_replaces_pin_each_staging_module_to_the_matching_v0_release():
    assert build_tools.staging_replaces(KUBERNETES_GOMOD, "v1.34.4") == {
        "k8s.io/api": "k8s.io/api v0.34.4",
        "k8s.io/client-go": "k8s.io/client-go v0.34.4",
    }


def test_staging_replaces_refuse_a_go_mod_without_staging_lines():
    with pytest.raises(SystemExit, match="no staging replace lines"):
        build_tools.staging_replaces("module k8s.io/kubernetes\n", "v1.34.4")


def test_version_ldflags_set_component_base_and_client_go():
    flags = build_tools.k8s_version_ldflags("v1.34.4", "abc123", "2026-02-10T12:53:36Z")
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        assert f"-X {pkg}.gitVersion=v1.34.4" in flags
        assert f"-X {pkg}.gitMajor=1" in flags
        assert f"-X {pkg}.gitMinor=34" in flags
        assert f"-X {pkg}.gitCommit=abc123" in flags
        assert f"-X {pkg}.buildDate=2026-02-10T12:53:36Z" in flags


def test_toolset_dir_is_keyed_by_every_version(tmp_path: Path):
    path = build_tools.toolset_bin_dir(tmp_path)
    for version in (build_tools.K8S_VERSION, build_tools.ETCD_VERSION, build_tools.KWOK_VERSION,
                    build_tools.HELM_VERSION, build_tools.COREDNS_VERSION, build_tools.NETPOL_VERSION):
        assert version in str(path)
    assert path.name == "bin" and path.is_relative_to(tmp_path)


def test_kubeconfig_document_names_its_server():
    doc = kubeconfig_document("https://127.0.0.1:6443", b"ca", b"cert", b"key")
    assert server_of(doc) == "https://127.0.0.1:6443"
    assert doc["users"][0]["user"]["client-key-data"] == "a2V5"


def test_kwok_nodes_are_selected_by_kwok_and_schedulable():
    node = kwok_node("kwok-node-0")
    assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
    assert "taints" not in node.get("spec", {})
    assert node["status"]["allocatable"]["pods"] == "110"


def test_empty_kubeconfig_setting_means_a_local_control_plane(tmp_path: Path):
    """`make test-e2e` passes CACHEDMODEL_KUBECONFIG="" when KUBECONFIG is unset: that must start the
    local control plane, not treat "" as an existing cluster (which started nothing)."""
    from cachedmodel_operator.testing.control_plane import ControlPlane

    cluster = ControlPlane(tmp_path / "bin", workdir=tmp_path, kubeconfig="")
    assert not cluster.external
    assert cluster.kubeconfig == str(tmp_path / "admin.kubeconfig")


def test_go_commands_ignore_a_workspace_and_the_users_goflags(tmp_path: Path, monkeypatch):
    """A fresh machine's Go settings must not leak into the tool builds: a go.work above the cache
    (here: its parent; on a real machine, e.g. $HOME) or in GOWORK, or a GOFLAGS=-mod=vendor."""
    import shutil

    if shutil.which("go") is None:
        pytest.skip("go not installed (make tools needs it)")
    (tmp_path / "go.work").write_text("go 1.24\n")
    build_dir = tmp_path / "cache" / "build"
    build_dir.mkdir(parents=True)
    monkeypatch.setenv("GOFLAGS", "-mod=vendor")
    monkeypatch.delenv("GOWORK", raising=False)
    out = build_tools.run(["go", "env", "GOWORK", "GOFLAGS"], build_dir).split("\n")
    assert out[0] == "off", f"go would use the workspace {out[0]!r}"
    assert "-mod=mod" in out[1] and "vendor" not in out[1]


def test_toolset_links_work_with_a_relative_tools_cache(tmp_path: Path, monkeypatch):
    """`make tools TOOLS_CACHE=tools-cache` (relative): the links in the toolset dir must still reach the binaries."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TOOLS_CACHE", "tools-cache")
    cache = build_tools.tools_cache()
    tool = build_tools.Tool("demo", "v1.0.0", "example.com/demo", ["example.com/demo/cmd/demo"], ["demo"])
    binary = cache / tool.key / "bin" / "demo"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    bin_dir = build_tools.link_toolset(cache, [tool])
    assert (bin_dir / "demo").resolve() == binary.resolve() and (bin_dir / "demo").is_file()
    monkeypatch.chdir("/")  # the fixtures may run from elsewhere
    assert (bin_dir / "demo").is_file()
