"""A real single-node Kubernetes cluster whose pods run: the e2e tier's cluster.

The local control plane (testing/control_plane.py) listens on a bridge this run creates; one real
node joins it: Debian's containerd + runc with the bridge CNI plugin, a kubelet and kube-proxy
(iptables) built by `make tools`, CoreDNS as a host process answering cluster.local on the bridge,
and SIG Network's kube-network-policies as a DaemonSet so that NetworkPolicy is enforced (new
connections to pods reach it through iptables' NFQUEUE target: this kernel lacks nftables' queue). Images
come from `make images` (docker archives imported into containerd); nothing is ever pulled.

Addresses: pods and Services live on that bridge (PodNetwork), and the Service range is routed to
it, so no packet for them can leave the machine. Every change to the host (bridge, routes,
iptables rules, sysctls, cgroups, mounts, processes) is recorded in a HostChanges log and undone
by stop(), also when start() fails half way. Needs root.

The pure builders (configs of containerd, CNI, kubelet, kube-proxy, CoreDNS; the network-policy
addon's manifests; a one-binary image archive) are separate from the I/O and unit-tested.
"""
from __future__ import annotations

import hashlib
import io
import ipaddress
import json
import os
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from cachedmodel_operator.testing.control_plane import Component, ControlPlane
from cachedmodel_operator.testing.host import (HostChanges, remove_cgroups, run, stale_rules, unmount_all)
from cachedmodel_operator.testing.processes import wait_until

NODE_NAME = "cachedmodel-node"
NODE_BINARIES = ["kubelet", "kube-proxy", "coredns", "netpol"]
HOST_COMMANDS = ["containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "ip", "nft"]
CNI_DIR = Path("/usr/lib/cni")
NETPOL_IMAGE = "cachedmodel-local/kube-network-policies:v0.8.0"
NETPOL_QUEUE = 98  # the nfqueue the network-policy agent reads
KUBELET_SYSCTLS = ["kernel.panic", "kernel.panic_on_oops", "vm.overcommit_memory", "vm.panic_on_oom"]
STARTED: list["PodsCluster"] = []  # clusters started in this process (for a summary line)
APT_PACKAGES = ["containerd", "runc", "containernetworking-plugins", "iptables", "nftables", "conntrack"]


@dataclass(frozen=True)
class PodNetwork:
    """The bridge, the node's address on it, and the pod and Service ranges routed to it."""

    bridge: str = "cmpods0"
    node_ip: str = "10.244.0.1"
    pod_cidr: str = "10.244.0.0/24"
    service_cidr: str = "10.0.0.0/24"  # the control plane's --service-cluster-ip-range (k8s_pki.SERVICE_IP)

    def owns(self, address: str) -> bool:
        """Is `address` a pod or Service address of this bridge (the only non-loopback test targets)?"""
        ip = ipaddress.ip_address(address)
        return ip in ipaddress.ip_network(self.pod_cidr) or ip in ipaddress.ip_network(self.service_cidr)


def overlapping_routes(network: PodNetwork, routes: list[str]) -> list[str]:
    """Host routes (`ip route` lines) that overlap our ranges: the run would hijack the host's traffic."""
    ours = [ipaddress.ip_network(network.pod_cidr), ipaddress.ip_network(network.service_cidr)]
    clashes = []
    for line in routes:
        destination = line.split()[0] if line.strip() else ""
        if destination in ("default", "") or f"dev {network.bridge}" in line:
            continue
        try:
            theirs = ipaddress.ip_network(destination, strict=False)
        except ValueError:
            continue
        if any(theirs.overlaps(mine) for mine in ours):
            clashes.append(line.strip())
    return clashes


# ------------------------------------------------------------------ pure builders


def containerd_config(workdir: Path, sandbox_image: str) -> str:
    """containerd 1.6 (CRI) with its own root, state and socket under `workdir`."""
    root = workdir / "containerd"
    return f'''version = 2
root = "{root / 'root'}"
state = "{root / 'state'}"
[grpc]
  address = "{root / 'containerd.sock'}"
[ttrpc]
  address = "{root / 'containerd.sock.ttrpc'}"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{root / 'opt'}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  netns_mounts_under_state_dir = true
  # the VM withholds CAP_SYS_RESOURCE: a negative oom_score_adj makes runc fail
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_DIR}"
    conf_dir = "{workdir / 'cni' / 'net.d'}"
'''


def cni_config(workdir: Path, network: PodNetwork) -> dict:
    """The bridge plugin on our bridge, host-local addresses, no masquerade (pods reach only this host)."""
    pods = ipaddress.ip_network(network.pod_cidr)
    return {"cniVersion": "0.4.0", "name": "cachedmodel-pods", "plugins": [{
        "type": "bridge", "bridge": network.bridge, "isGateway": True, "ipMasq": False, "hairpinMode": True,
        "ipam": {"type": "host-local", "dataDir": str(workdir / "cni" / "ipam"),
                 "ranges": [[{"subnet": network.pod_cidr, "rangeStart": str(pods[10]),
                              "gateway": network.node_ip}]],
                 "routes": [{"dst": "0.0.0.0/0"}]}}]}


def kubelet_config(workdir: Path, network: PodNetwork, client_ca: Path) -> dict:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "cgroupDriver": "cgroupfs", "failCgroupV1": False,
        "containerRuntimeEndpoint": f"unix://{workdir / 'containerd' / 'containerd.sock'}",
        "address": network.node_ip, "port": 10250, "readOnlyPort": 0, "healthzBindAddress": network.node_ip,
        "healthzPort": 10248,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                           "x509": {"clientCAFile": str(client_ca)}},
        "authorization": {"mode": "AlwaysAllow"},
        "clusterDomain": "cluster.local", "clusterDNS": [network.node_ip],
        "failSwapOn": False, "oomScoreAdj": 0,  # no CAP_SYS_RESOURCE: no negative scores
        "podLogsDir": str(workdir / "kubelet" / "pod-logs"),
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "resolvConf": "/etc/resolv.conf", "serializeImagePulls": False, "maxPods": 60,
        "staticPodPath": "", "registerNode": True,
    }


def kube_proxy_config(kubeconfig: str, network: PodNetwork) -> dict:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration", "mode": "iptables",
        "clientConnection": {"kubeconfig": kubeconfig}, "hostnameOverride": NODE_NAME,
        "bindAddress": network.node_ip, "clusterCIDR": network.pod_cidr,
        "healthzBindAddress": f"{network.node_ip}:10256", "metricsBindAddress": f"{network.node_ip}:10249",
        # leave the host's conntrack limits alone
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        "iptables": {"localhostNodePorts": False},
    }


def corefile(network: PodNetwork, kubeconfig: str) -> str:
    return f"""cluster.local:53 in-addr.arpa:53 {{
    bind {network.node_ip}
    errors
    kubernetes cluster.local in-addr.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        fallthrough in-addr.arpa
    }}
    cache 5
}}
"""


def netpol_manifests(image: str) -> list[dict]:
    """kube-network-policies (SIG Network) as a hostNetwork DaemonSet with NET_ADMIN, its RBAC."""
    name, namespace = "kube-network-policies", "kube-system"
    labels = {"app": name}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name},
         "rules": [{"apiGroups": [""], "resources": ["pods", "namespaces", "nodes"], "verbs": ["list", "watch"]},
                   {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"],
                    "verbs": ["list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]},
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name, "namespace": namespace,
                                                                    "labels": labels},
         "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": {
             "hostNetwork": True, "serviceAccountName": name,
             "tolerations": [{"operator": "Exists"}],
             "containers": [{
                 "name": name, "image": image, "imagePullPolicy": "Never",
                 "args": ["--hostname-override=$(NODE_NAME)", "--disable-nri", f"--nfqueue-id={NETPOL_QUEUE}",
                          "--netfilter-bug-1766-fix=false", "--metrics-bind-address=127.0.0.1:9080", "--v=2"],
                 "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                 "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}},
                 "resources": {"requests": {"cpu": "50m", "memory": "30Mi"}}}]}}}},
    ]


def one_binary_image_archive(binary: bytes, path: str, image: str) -> bytes:
    """A `docker save`-format archive of a FROM-scratch image holding one static binary (its entrypoint)."""
    def tar_bytes(entries: list[tuple[str, bytes, int]]) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
            for name, data, mode in entries:
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), mode, 0
                archive.addfile(info, io.BytesIO(data))
        return buffer.getvalue()

    layer = tar_bytes([(path.lstrip("/"), binary, 0o755)])
    layer_id = hashlib.sha256(layer).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Entrypoint": [path]},
                         "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_id}"]}},
                        sort_keys=True).encode()
    config_id = hashlib.sha256(config).hexdigest()
    manifest = json.dumps([{"Config": f"{config_id}.json", "RepoTags": [image],
                            "Layers": [f"{layer_id}/layer.tar"]}]).encode()
    return tar_bytes([(f"{layer_id}/layer.tar", layer, 0o644), (f"{config_id}.json", config, 0o644),
                      ("manifest.json", manifest, 0o644)])


def missing_prerequisites(bin_dir: Path) -> list[str]:
    """What this machine lacks for a real node (empty when it can run one)."""
    missing = [] if os.geteuid() == 0 else ["root (a node changes the host's network)"]
    missing += [f"{name} (apt-get install {' '.join(APT_PACKAGES)})" for name in HOST_COMMANDS
                if shutil.which(name) is None]
    missing += [f"{CNI_DIR}/{plugin} (apt-get install containernetworking-plugins)"
                for plugin in ("bridge", "host-local", "loopback") if not (CNI_DIR / plugin).exists()]
    missing += [f"{bin_dir}/{name} (make tools)" for name in NODE_BINARIES if not (bin_dir / name).exists()]
    return missing


# ------------------------------------------------------------------ the cluster


class PodsCluster(ControlPlane):
    """The control plane on a pod bridge plus one real node; `kubectl`, `helm`, `api_client` as usual."""

    def __init__(self, bin_dir: Path, images: dict[str, Path], sandbox_image: str, redis_image: str | None = None,
                 network: PodNetwork = PodNetwork(), workdir: Path | None = None):
        """`images`: tag -> `docker save` archive to import; `redis_image`: what CachedModels here run as
        Redis (a local build: the default redis:7.2 cannot be pulled)."""
        super().__init__(bin_dir, workdir=workdir, address=network.node_ip, kwok_nodes=0)
        self.network, self.images, self.sandbox_image = network, images, sandbox_image
        self.redis_image = redis_image
        self.changes = HostChanges()
        self.node_components: list[Component] = []
        self.timings: dict[str, float] = {}
        self.real_pods = True

    # ---- helpers
    @property
    def ctr(self) -> list[str]:
        return ["ctr", "-a", str(self.workdir / "containerd" / "containerd.sock"), "-n", "k8s.io"]

    def _node_component(self, name: str, args: list[str]) -> Component:
        component = Component(name, args, self.workdir / "logs")
        component.start()
        self.node_components.append(component)
        return component

    def _mark(self, step: str, since: float) -> float:
        now = time.monotonic()
        self.timings[step] = round(now - since, 2)
        return now

    # ---- lifecycle
    def start(self) -> "PodsCluster":
        started = time.monotonic()
        try:
            (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
            self._network_up()
            mark = self._mark("network", started)
            self._start_components()  # the control plane, listening on the bridge
            mark = self._mark("control plane", mark)
            self._node_up()
            self._mark("node", mark)
        except BaseException as error:
            tails = self.log_tails()
            self.keep_workdir = True
            self.stop()
            if isinstance(error, Exception):
                raise RuntimeError(f"real-pods cluster failed to start: {error}\n{tails}\n"
                                   f"(logs kept in {self.workdir / 'logs'})") from error
            raise
        self.startup_seconds = time.monotonic() - started
        STARTED.append(self)
        return self

    def _network_up(self) -> None:
        net = self.network
        routes = run("ip", "route", "show").stdout.splitlines()
        clashes = overlapping_routes(net, routes)
        if clashes:
            raise RuntimeError(f"host routes overlap the pod/Service ranges {net.pod_cidr}, {net.service_cidr}: {clashes}")
        self._remove_stale()
        self.changes.keep_nft_tables()
        self.changes.apply(f"bridge {net.bridge}",
                           lambda: (run("ip", "link", "add", net.bridge, "type", "bridge"),
                                    run("ip", "addr", "add", f"{net.node_ip}/{ipaddress.ip_network(net.pod_cidr).prefixlen}",
                                        "dev", net.bridge),
                                    run("ip", "link", "set", net.bridge, "up")),
                           lambda: run("ip", "link", "del", net.bridge, check=False))
        # Service addresses go to the bridge too: kube-proxy rewrites them, nothing ever leaves the machine
        self.changes.apply(f"route {net.service_cidr}",
                           lambda: run("ip", "route", "add", net.service_cidr, "dev", net.bridge),
                           lambda: run("ip", "route", "del", net.service_cidr, "dev", net.bridge, check=False))
        self.changes.sysctl("net.ipv4.ip_forward", "1")
        if Path("/proc/sys/net/bridge/bridge-nf-call-iptables").exists():
            self.changes.sysctl("net.bridge.bridge-nf-call-iptables", "1")  # Service replies between pods
        self.changes.keep_sysctls(KUBELET_SYSCTLS)
        for direction in ("-i", "-o"):  # pod traffic is forwarded even where FORWARD's policy is DROP
            self.changes.iptables_rule("filter", "FORWARD", direction, net.bridge, "-j", "ACCEPT")

    def _remove_stale(self) -> None:
        """What a run that was killed left behind: our bridge, route and rules."""
        net = self.network
        if run("ip", "link", "show", net.bridge, check=False).returncode == 0:
            run("ip", "link", "del", net.bridge, check=False)
        run("ip", "route", "del", net.service_cidr, "dev", net.bridge, check=False)
        for rule in stale_rules():
            run("iptables", "-w", "-D", *rule, check=False)

    def _node_up(self) -> None:
        mark = time.monotonic()
        workdir, net, pki = self.workdir, self.network, self.workdir / "pki"
        for sub in ("containerd", "cni/net.d", "cni/ipam", "kubelet/root", "kubelet/pod-logs", "coredns"):
            (workdir / sub).mkdir(parents=True, exist_ok=True)
        (workdir / "containerd" / "config.toml").write_text(containerd_config(workdir, self.sandbox_image))
        (workdir / "cni" / "net.d" / "10-cachedmodel.conflist").write_text(json.dumps(cni_config(workdir, net)))
        # containerd's shims and the pods' mounts outlive a crash of ours: undo them at stop
        self.changes.on_restore("mounts under the node's workdir", lambda: unmount_all(workdir))
        self.changes.on_restore("kubepods cgroups", lambda: remove_cgroups("kubepods"))
        containerd = self._node_component("containerd", ["containerd", "--config", str(workdir / "containerd" / "config.toml")])
        self.changes.on_restore("containerd", lambda: self._stop_containerd(containerd))
        wait_until(lambda: subprocess.run([*self.ctr, "version"], capture_output=True).returncode == 0
                   or (not containerd.running() and _raise(f"containerd exited: {containerd.tail()}")),
                   60, interval=0.2, what="containerd")
        self._import_images()
        mark = self._mark("images imported", mark)

        (workdir / "kubelet" / "config.yaml").write_text(yaml.safe_dump(kubelet_config(workdir, net, pki / "ca_cert.pem")))
        kubelet = self._node_component("kubelet", [
            str(Path(self.bin_dir) / "kubelet"), f"--config={workdir / 'kubelet' / 'config.yaml'}",
            f"--kubeconfig={self.kubeconfig}", f"--root-dir={workdir / 'kubelet' / 'root'}",
            f"--cert-dir={workdir / 'kubelet' / 'pki'}", f"--hostname-override={NODE_NAME}",
            f"--node-ip={net.node_ip}", "--v=1"])
        self.changes.on_restore("kubelet", lambda: self._stop_kubelet(kubelet))
        wait_until(lambda: self._node_ready() or (not kubelet.running() and _raise(f"kubelet exited: {kubelet.tail()}")),
                   120, interval=0.5, what=f"node {NODE_NAME} Ready")
        mark = self._mark("kubelet Ready", mark)

        (workdir / "kube-proxy.yaml").write_text(yaml.safe_dump(kube_proxy_config(self.kubeconfig, net)))
        proxy = self._node_component("kube-proxy", [str(Path(self.bin_dir) / "kube-proxy"),
                                                    f"--config={workdir / 'kube-proxy.yaml'}", "--v=1"])
        self.changes.on_restore("kube-proxy rules", lambda: self._stop_kube_proxy(proxy))
        (workdir / "coredns" / "Corefile").write_text(corefile(net, self.kubeconfig))
        coredns = self._node_component("coredns", [str(Path(self.bin_dir) / "coredns"), "-conf",
                                                   str(workdir / "coredns" / "Corefile")])
        self.changes.on_restore("coredns", coredns.stop)
        wait_until(lambda: "default/kubernetes" in run("iptables", "-w", "-t", "nat", "-S", check=False).stdout,
                   60, interval=0.3, what="kube-proxy's rules for default/kubernetes")
        mark = self._mark("kube-proxy + CoreDNS", mark)

        self.changes.on_restore("kube-network-policies nftables",
                                lambda: run("nft", "delete", "table", "inet", "kube-network-policies", check=False))
        # kube-network-policies sends new connections to its nfqueue with nftables' `queue` statement, which
        # kernels without CONFIG_NFT_QUEUE lack (its rule sync then fails and nothing is enforced): hand it
        # every new connection to a pod through iptables' NFQUEUE target instead (bypassed while it is down)
        self.changes.iptables_rule("filter", "FORWARD", "-o", net.bridge, "-m", "conntrack", "--ctstate", "NEW",
                                   "-j", "NFQUEUE", "--queue-num", str(NETPOL_QUEUE), "--queue-bypass")
        self.kubectl("apply", "-f", "-", input="\n---\n".join(yaml.safe_dump(m) for m in netpol_manifests(NETPOL_IMAGE)))
        self.kubectl("rollout", "status", "daemonset/kube-network-policies", "-n", "kube-system", "--timeout=120s",
                     timeout=130)
        self._mark("network policies", mark)

    def _import_images(self) -> None:
        netpol = self.workdir / "netpol-image.tar"
        netpol.write_bytes(one_binary_image_archive((Path(self.bin_dir) / "netpol").read_bytes(), "/bin/netpol",
                                                    NETPOL_IMAGE))
        for image, archive in {**self.images, NETPOL_IMAGE: netpol}.items():
            with open(archive, "rb") as handle:
                result = subprocess.run([*self.ctr, "images", "import", "-"], stdin=handle, capture_output=True,
                                        text=True, timeout=300)
            if result.returncode != 0:
                raise RuntimeError(f"importing {image} from {archive}: {result.stderr.strip()}")

    def _node_ready(self) -> bool:
        result = self.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
        if result.returncode != 0:
            return False
        conditions = json.loads(result.stdout).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    # ---- teardown (each runs from the undo log, newest first)
    def _stop_kube_proxy(self, proxy: Component) -> None:
        proxy.stop()
        run(str(Path(self.bin_dir) / "kube-proxy"), "--cleanup", check=False)

    def _stop_kubelet(self, kubelet: Component) -> None:
        """Let the kubelet tear every pod down (CNI DEL, unmounts) before it stops."""
        for name in ("kube-controller-manager", "kube-scheduler"):  # nothing may re-create the pods
            for component in self.components:
                if component.name == name:
                    component.stop()
        if kubelet.running() and self.running_apiserver():
            self.kubectl("delete", "pods", "--all", "-A", "--grace-period=3", "--wait=false", check=False)
            try:
                wait_until(lambda: not json.loads(self.kubectl("get", "pods", "-A", "-o", "json", check=False).stdout
                                                  or '{"items": []}')["items"], 60, interval=0.5, what="pods gone")
            except TimeoutError:
                pass
        kubelet.stop()
        for iptables in ("iptables", "ip6tables"):  # the kubelet's own chains
            for chain in ("INPUT", "OUTPUT"):
                while run(iptables, "-w", "-D", chain, "-j", "KUBE-FIREWALL", check=False).returncode == 0:
                    pass
            for table, chain in (("filter", "KUBE-FIREWALL"), ("filter", "KUBE-KUBELET-CANARY"),
                                 ("nat", "KUBE-KUBELET-CANARY"), ("mangle", "KUBE-KUBELET-CANARY"),
                                 ("mangle", "KUBE-IPTABLES-HINT")):
                run(iptables, "-w", "-t", table, "-F", chain, check=False)
                run(iptables, "-w", "-t", table, "-X", chain, check=False)

    def _stop_containerd(self, containerd: Component) -> None:
        """Kill what is left of the containers (shims outlive containerd), then containerd."""
        if containerd.running():
            tasks = run(*self.ctr, "tasks", "ls", "-q", check=False).stdout.split()
            for task in tasks:
                run(*self.ctr, "tasks", "kill", "-s", "SIGKILL", task, check=False)
            for task in tasks:
                run(*self.ctr, "tasks", "delete", "-f", task, check=False)
        containerd.stop()
        for line in run("pgrep", "-af", "containerd-shim", check=False).stdout.splitlines():
            if str(self.workdir) in line:  # only the shims of this run
                run("kill", "-9", line.split()[0], check=False)

    def running_apiserver(self) -> bool:
        return any(c.name == "kube-apiserver" and c.running() for c in self.components)

    def stop(self) -> None:
        failed = self.changes.restore()
        for component in reversed(self.node_components):
            component.stop()
        self.node_components.clear()
        super().stop()
        if failed:
            print(f"real-pods cluster: could not undo {failed}", flush=True)

    def log_tails(self) -> str:
        return "\n".join(c.tail() for c in [*self.components, *self.node_components])


def _raise(message: str):
    raise RuntimeError(message)
