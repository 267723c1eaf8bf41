"""Pure parts of the real-pods cluster (cachedmodel_operator.testing.pods and .host)."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from cachedmodel_operator.testing import pods
from cachedmodel_operator.testing.host import HostChanges, mounts_under
from cachedmodel_operator.testing.k8s_pki import SERVICE_IP

NET = pods.PodNetwork()


def test_the_service_range_is_the_control_planes_and_the_node_sits_in_the_pod_range():
    assert NET.owns(SERVICE_IP) and NET.owns(NET.node_ip)
    assert not NET.owns("127.0.0.1") and not NET.owns("192.0.2.2") and not NET.owns("10.245.0.1")


def test_routes_that_overlap_our_ranges_are_found():
    routes = ["default via 192.0.2.1 dev eth0", "192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2",
              "10.244.0.0/16 via 192.0.2.9 dev eth0", f"10.0.0.0/24 dev {NET.bridge} scope link"]
    assert pods.overlapping_routes(NET, routes) == ["10.244.0.0/16 via 192.0.2.9 dev eth0"]
    assert pods.overlapping_routes(NET, routes[:2]) == []


def test_cni_config_uses_our_bridge_without_masquerade(tmp_path: Path):
    config = pods.cni_config(tmp_path, NET)
    bridge = config["plugins"][0]
    assert bridge["bridge"] == NET.bridge and bridge["ipMasq"] is False and len(config["plugins"]) == 1
    assert bridge["ipam"]["ranges"][0][0] == {"subnet": NET.pod_cidr, "rangeStart": "10.244.0.10",
                                              "gateway": NET.node_ip}
    assert bridge["ipam"]["dataDir"].startswith(str(tmp_path))


def test_containerd_keeps_everything_under_the_workdir(tmp_path: Path):
    text = pods.containerd_config(tmp_path, "cachedmodel-local/pause:3.10")
    paths = [line.split('"')[1] for line in text.splitlines()
             if line.strip().startswith(("root", "state", "address", "path", "conf_dir")) and '"' in line
             and line.split('"')[1]]
    assert paths and all(p.startswith(str(tmp_path)) for p in paths), paths
    assert 'sandbox_image = "cachedmodel-local/pause:3.10"' in text and "restrict_oom_score_adj = true" in text


def test_kubelet_config_fits_this_machine(tmp_path: Path):
    config = pods.kubelet_config(tmp_path, NET, tmp_path / "ca.pem")
    assert config["cgroupDriver"] == "cgroupfs" and config["failCgroupV1"] is False  # cgroup v1 here
    assert config["oomScoreAdj"] == 0 and config["clusterDNS"] == [NET.node_ip]
    assert config["authentication"]["anonymous"]["enabled"] is False and config["readOnlyPort"] == 0
    assert config["containerRuntimeEndpoint"] == f"unix://{tmp_path}/containerd/containerd.sock"


def test_kube_proxy_leaves_conntrack_limits_alone():
    config = pods.kube_proxy_config("/k", NET)
    assert config["mode"] == "iptables" and config["conntrack"]["maxPerCore"] == 0
    assert config["clusterCIDR"] == NET.pod_cidr and config["bindAddress"] == NET.node_ip


def test_coredns_answers_only_on_the_bridge():
    text = pods.corefile(NET, "/k")
    assert f"bind {NET.node_ip}" in text and "kubeconfig /k" in text and "forward" not in text


def test_network_policy_addon_runs_unprivileged_with_net_admin():
    daemonset = next(m for m in pods.netpol_manifests("img:1") if m["kind"] == "DaemonSet")
    container = daemonset["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "img:1" and container["imagePullPolicy"] == "Never"
    assert container["securityContext"] == {"capabilities": {"add": ["NET_ADMIN"]}}  # no privileged
    assert "--disable-nri" in container["args"]  # containerd 1.6 has no NRI


def test_one_binary_image_archive_is_a_docker_archive():
    data = pods.one_binary_image_archive(b"\x7fELF...", "/bin/netpol", "local/netpol:1")
    archive = tarfile.open(fileobj=io.BytesIO(data))
    manifest = json.load(archive.extractfile("manifest.json"))
    assert manifest[0]["RepoTags"] == ["local/netpol:1"]
    config = json.load(archive.extractfile(manifest[0]["Config"]))
    assert config["config"]["Entrypoint"] == ["/bin/netpol"] and config["os"] == "linux"
    layer = tarfile.open(fileobj=io.BytesIO(archive.extractfile(manifest[0]["Layers"][0]).read()))
    member = layer.getmember("bin/netpol")
    assert member.mode == 0o755 and layer.extractfile(member).read() == b"\x7fELF..."
    assert data == pods.one_binary_image_archive(b"\x7fELF...", "/bin/netpol", "local/netpol:1"), "reproducible"


def test_host_changes_are_undone_newest_first_and_failures_reported():
    done: list[str] = []
    changes = HostChanges()
    changes.apply("a", lambda: done.append("do a"), lambda: done.append("undo a"))
    changes.apply("b", lambda: done.append("do b"), lambda: 1 / 0)
    changes.on_restore("c", lambda: done.append("undo c"))
    failed = changes.restore()
    assert done == ["do a", "do b", "undo c", "undo a"]
    assert len(failed) == 1 and failed[0].startswith("b: ")
    assert changes.restore() == [], "restoring twice does nothing"


def test_a_change_that_fails_is_not_recorded():
    changes = HostChanges()
    with pytest.raises(ZeroDivisionError):
        changes.apply("x", lambda: 1 / 0, lambda: None)
    assert changes.undo == []


def test_mounts_under_lists_deepest_first(tmp_path: Path):
    assert mounts_under(tmp_path) == []
    assert mounts_under(Path("/")) and mounts_under(Path("/"))[-1] == "/"


def test_an_iptables_table_is_empty_only_with_nothing_but_accept_policies():
    from cachedmodel_operator.testing.host import only_default_policies

    assert only_default_policies("-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n")
    assert not only_default_policies("-P INPUT ACCEPT\n-P FORWARD DROP\n-P OUTPUT ACCEPT\n"), "Docker's DROP policy"
    assert not only_default_policies("-P FORWARD ACCEPT\n-N DOCKER\n"), "someone's own chain"
    assert not only_default_policies("-P FORWARD ACCEPT\n-A FORWARD -o docker0 -j DOCKER\n"), "someone's rule"


def test_a_sysctl_changed_by_someone_else_meanwhile_is_left_alone(monkeypatch):
    from cachedmodel_operator.testing import host

    values = {"net.ipv4.ip_forward": "0"}
    monkeypatch.setattr(host, "read_sysctl", lambda name: values[name])
    monkeypatch.setattr(host, "write_sysctl", lambda name, value: values.__setitem__(name, value))
    changes = host.HostChanges()
    changes.sysctl("net.ipv4.ip_forward", "1")
    assert values["net.ipv4.ip_forward"] == "1"
    changes.restore()
    assert values["net.ipv4.ip_forward"] == "0", "ours: put back"
    changes.sysctl("net.ipv4.ip_forward", "1")
    values["net.ipv4.ip_forward"] = "2"  # another program set its own value meanwhile
    changes.restore()
    assert values["net.ipv4.ip_forward"] == "2", "theirs: left alone"
