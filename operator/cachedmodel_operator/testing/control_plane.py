"""A real local Kubernetes control plane for the k8s and e2e tiers and the operator bench.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (3 simulated nodes, so pods
get scheduled and become Running/Ready) run as child processes on free loopback ports, from the
binaries `make tools` builds (scripts/build_tools.py). Readiness is polled with deadlines; every
process is stopped at session end, also when tests fail (try/finally plus atexit).

Environment:
- CACHEDMODEL_KUBECONFIG: use that existing cluster and start nothing (kubectl/helm still needed).
- CACHEDMODEL_K8S_BIN_DIR: a directory with your own etcd, kube-*, kwok, kubectl, helm binaries.
- CACHEDMODEL_REQUIRE_K8S=1: missing binaries fail the tests instead of skipping them (`make test`).
- CACHEDMODEL_KEEP_CONTROL_PLANE=1: keep the temp dir (logs, etcd data) after the session.
"""
from __future__ import annotations

import atexit
import base64
import ctypes
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from cachedmodel_operator.testing.k8s_pki import SERVICE_IP, build_pki, write_pki
from cachedmodel_operator.testing.processes import free_port, wait_until

if TYPE_CHECKING:
    import kubernetes

LOCAL_BINARIES = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kubectl", "helm"]
CLIENT_BINARIES = ["kubectl", "helm"]
NODE_COUNT = 3
KWOK_STAGES = Path(__file__).with_name("kwok-stages.yaml")
LOG_TAIL_LINES = 30


class KubeCommandError(subprocess.CalledProcessError):
    """A kubectl/helm call that failed; str() includes its stderr."""

    def __str__(self) -> str:
        return f"{' '.join(self.cmd)} exited {self.returncode}: {(self.stderr or '').strip()}"


def default_bin_dir() -> Path:
    """Where the binaries are: $CACHEDMODEL_K8S_BIN_DIR, else the set `make tools` builds."""
    if os.environ.get("CACHEDMODEL_K8S_BIN_DIR"):
        return Path(os.environ["CACHEDMODEL_K8S_BIN_DIR"])
    from scripts.build_tools import toolset_bin_dir

    return toolset_bin_dir()


def missing_binaries(bin_dir: Path, names: list[str]) -> list[str]:
    return [n for n in names if not ((bin_dir / n).is_file() and os.access(bin_dir / n, os.X_OK))]


# ------------------------------------------------------------------ pure builders


def kubeconfig_document(server: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes) -> dict:
    """An admin kubeconfig with the certificates embedded (portable: no paths inside)."""
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": "cachedmodel-local",
        "clusters": [{"name": "cachedmodel-local",
                      "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)}}],
        "users": [{"name": "cachedmodel-admin",
                   "user": {"client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem)}}],
        "contexts": [{"name": "cachedmodel-local",
                      "context": {"cluster": "cachedmodel-local", "user": "cachedmodel-admin"}}],
    }


def kwok_node(name: str) -> dict:
    """A Node kwok manages (annotation kwok.x-k8s.io/node=fake); no taint, so any pod may land on it."""
    resources = {"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "1Ti"}
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                     "labels": {"type": "kwok", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                "kubernetes.io/arch": "amd64", "kubernetes.io/role": "agent"}},
        "status": {"allocatable": resources, "capacity": resources},
    }


def server_of(kubeconfig: dict) -> str:
    context_name = kubeconfig.get("current-context")
    context = next(c["context"] for c in kubeconfig["contexts"] if c["name"] == context_name)
    return next(c["cluster"]["server"] for c in kubeconfig["clusters"] if c["name"] == context["cluster"])


# ------------------------------------------------------------------ processes


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if the test process dies, even by SIGKILL (Linux)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _raise_system_exit(signum, frame):
    raise SystemExit(128 + signum)


def _exit_on_sigterm() -> None:
    """Turn SIGTERM (CI timeouts, `kill`) into SystemExit so finally blocks and atexit stop the cluster."""
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _raise_system_exit)
    except ValueError:  # not the main thread: leave signals alone
        pass


class Component:
    """One control-plane process with its log file."""

    def __init__(self, name: str, args: list[str], log_dir: Path):
        self.name, self.args = name, args
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            # own session: a Ctrl-C reaches pytest only, which then stops the components in order
            self.process = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True,
                                            preexec_fn=_die_with_parent)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 15) -> None:
        if not self.running():
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            text = ["<no log>"]
        return f"--- {self.name} (exit {self.process.poll() if self.process else 'not started'}; " \
               f"{self.log_path}) ---\n" + "\n".join(text)


def http_ok(url: str, context: ssl.SSLContext | None = None, expect: str | None = None) -> bool:
    with urllib.request.urlopen(url, context=context, timeout=3) as response:
        body = response.read().decode(errors="replace")
        return response.status == 200 and (expect is None or expect in body)


# ------------------------------------------------------------------ the control plane


class ControlPlane:
    """A running cluster: a local one this class started, or an existing one (CACHEDMODEL_KUBECONFIG)."""

    kubeconfig: str
    bin_dir: str
    env: dict[str, str]
    server: str

    def __init__(self, bin_dir: Path, workdir: Path | None = None, kubeconfig: str | None = None,
                 address: str = "127.0.0.1", kwok_nodes: int = NODE_COUNT):
        """`address`: where the API server listens and what it advertises (a pod bridge's node address
        when real pods must reach it, see testing/pods.py); `kwok_nodes`: fake nodes (0 with a real node)."""
        kubeconfig = kubeconfig or None  # "" (e.g. `make test-e2e` with KUBECONFIG unset) = start a local one
        self.address, self.kwok_nodes = address, kwok_nodes
        self.real_pods = os.environ.get("CACHEDMODEL_REAL_PODS") == "1"  # an existing cluster whose pods run
        self.redis_image: str | None = None  # None: CachedModels keep their default Redis image
        self.bin_dir = str(bin_dir)
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="cachedmodel-k8s-"))
        self.components: list[Component] = []
        self.startup_seconds: float | None = None
        self.keep_workdir = os.environ.get("CACHEDMODEL_KEEP_CONTROL_PLANE") == "1"
        self.external = kubeconfig is not None
        self.kubeconfig = kubeconfig or str(self.workdir / "admin.kubeconfig")
        self.server = server_of(yaml.safe_load(Path(kubeconfig).read_text())) if kubeconfig else ""
        helm_home = self.workdir / "helm"
        self.env = {**os.environ, "KUBECONFIG": self.kubeconfig,
                    "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                    # helm keeps its repositories and cache in the temp dir, not the user's home
                    "HELM_CACHE_HOME": str(helm_home / "cache"), "HELM_CONFIG_HOME": str(helm_home / "config"),
                    "HELM_DATA_HOME": str(helm_home / "data")}

    # ---- commands

    def _run(self, tool: str, args, input: str | None, check: bool, timeout: float) -> subprocess.CompletedProcess:
        cmd = [str(Path(self.bin_dir) / tool), *map(str, args)]
        result = subprocess.run(cmd, input=input, text=True, capture_output=True, env=self.env, timeout=timeout)
        if check and result.returncode != 0:
            raise KubeCommandError(result.returncode, cmd, result.stdout, result.stderr)
        return result

    def kubectl(self, *args, input: str | None = None, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return self._run("kubectl", args, input, check, timeout)

    def helm(self, *args, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        return self._run("helm", args, None, check, timeout)

    def api_client(self) -> "kubernetes.client.ApiClient":
        """A kubernetes.client.ApiClient for this cluster (the caller closes it)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=self.kubeconfig)

    # ---- lifecycle of a local cluster

    def start(self) -> "ControlPlane":
        """Start every component and wait until nodes are Ready; on failure stop all and show log tails."""
        if self.external:
            return self
        started = time.monotonic()
        atexit.register(self.stop)
        _exit_on_sigterm()
        try:
            self._start_components()
        except Exception as error:
            tails = self.log_tails()
            self.keep_workdir = True  # the logs explain the failure
            self.stop()
            raise RuntimeError(f"local control plane failed to start: {error}\n{tails}\n"
                               f"(all logs kept in {self.workdir / 'logs'})") from error
        except BaseException:  # KeyboardInterrupt, SystemExit: stop everything, then go on exiting
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _component(self, name: str, *args: str) -> Component:
        component = Component(name, [str(Path(self.bin_dir) / name), *args], self.workdir / "logs")
        component.start()
        self.components.append(component)
        return component

    def _wait(self, component: Component, url: str, timeout: float, context=None, expect=None) -> None:
        """Poll a health endpoint until it answers; give up at once if the process has exited."""
        deadline, last_error = time.monotonic() + timeout, None
        while True:
            if not component.running():
                raise RuntimeError(f"{component.name} exited with code {component.process.poll()}")
            try:
                if http_ok(url, context, expect):
                    return
            except OSError as error:  # refused, TLS not up yet, HTTP 500 while starting
                last_error = error
            if time.monotonic() > deadline:
                raise TimeoutError(f"{component.name} not healthy at {url} after {timeout}s: {last_error!r}")
            time.sleep(0.2)

    def _start_components(self) -> None:
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        pem = write_pki(pki := build_pki(extra_ips=[self.address]), self.workdir / "pki")
        host = self.address
        insecure = ssl.create_default_context()
        insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE  # self-signed serving certs
        admin = ssl.create_default_context(cafile=str(pem["ca_cert"]))
        admin.load_cert_chain(str(pem["admin_cert"]), str(pem["admin_key"]))

        etcd_port, peer_port = free_port(), free_port()
        etcd = self._component(
            "etcd", "--name", "cachedmodel", "--data-dir", str(self.workdir / "etcd"),
            "--listen-client-urls", f"http://{host}:{etcd_port}", "--advertise-client-urls", f"http://{host}:{etcd_port}",
            "--listen-peer-urls", f"http://{host}:{peer_port}",
            "--initial-advertise-peer-urls", f"http://{host}:{peer_port}",
            "--initial-cluster", f"cachedmodel=http://{host}:{peer_port}",
            "--unsafe-no-fsync", "--log-level", "warn")
        self._wait(etcd, f"http://{host}:{etcd_port}/health", 30, expect='"health":"true"')

        api_port = free_port()
        self.server = f"https://{host}:{api_port}"
        apiserver = self._component(
            "kube-apiserver", f"--etcd-servers=http://{host}:{etcd_port}",
            f"--bind-address={host}", f"--advertise-address={host}", f"--secure-port={api_port}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={pem['server_cert']}", f"--tls-private-key-file={pem['server_key']}",
            f"--client-ca-file={pem['ca_cert']}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pem['sa_public_key']}",
            f"--service-account-signing-key-file={pem['sa_private_key']}",
            f"--service-cluster-ip-range={SERVICE_IP.rsplit('.', 1)[0]}.0/24",
            "--authorization-mode=RBAC", "--allow-privileged=true",
            # pods reach the API through the `kubernetes` Service only when it has endpoints
            f"--endpoint-reconciler-type={'none' if host.startswith('127.') else 'lease'}",
            f"--kubelet-client-certificate={pem['admin_cert']}", f"--kubelet-client-key={pem['admin_key']}",
            "--kubelet-preferred-address-types=InternalIP",
            "--enable-priority-and-fairness=false", "--profiling=false", "--v=1")
        Path(self.kubeconfig).write_text(yaml.safe_dump(
            kubeconfig_document(self.server, pki.ca_cert, pki.admin_cert, pki.admin_key)))
        Path(self.kubeconfig).chmod(0o600)
        self._wait(apiserver, f"{self.server}/readyz", 120, admin, expect="ok")

        kubeconfig = f"--kubeconfig={self.kubeconfig}"
        delegated = [f"--authentication-kubeconfig={self.kubeconfig}", f"--authorization-kubeconfig={self.kubeconfig}"]
        kcm_port, scheduler_port, kwok_port = free_port(), free_port(), free_port()
        kcm = self._component(
            "kube-controller-manager", kubeconfig, *delegated, f"--bind-address={host}", f"--secure-port={kcm_port}",
            f"--cert-dir={self.workdir / 'kcm-certs'}", "--leader-elect=false", "--controllers=*",
            f"--service-account-private-key-file={pem['sa_private_key']}", f"--root-ca-file={pem['ca_cert']}",
            f"--cluster-signing-cert-file={pem['ca_cert']}", f"--cluster-signing-key-file={pem['ca_key']}", "--v=1")
        scheduler = self._component(
            "kube-scheduler", kubeconfig, *delegated, f"--bind-address={host}", f"--secure-port={scheduler_port}",
            "--leader-elect=false", "--v=1")
        self._wait(kcm, f"https://{host}:{kcm_port}/healthz", 60, insecure, expect="ok")
        self._wait(scheduler, f"https://{host}:{scheduler_port}/healthz", 60, insecure, expect="ok")
        if self.kwok_nodes:
            kwok = self._component(
                "kwok", kubeconfig, f"--config={KWOK_STAGES}", "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                f"--server-address={host}:{kwok_port}", "--cidr=10.0.64.0/18", "--node-ip=10.0.32.1")
            self._wait(kwok, f"http://{host}:{kwok_port}/healthz", 60)
            for i in range(self.kwok_nodes):
                self.kubectl("apply", "-f", "-", input=json.dumps(kwok_node(f"kwok-node-{i}")))
            wait_until(lambda: self.ready_node_count() == self.kwok_nodes, 90, interval=0.5,
                       what=f"{self.kwok_nodes} kwok nodes Ready")
        wait_until(lambda: self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False).returncode == 0,
                   60, interval=0.3, what="service account default/default (controller-manager)")

    def ready_node_count(self) -> int:
        nodes = json.loads(self.kubectl("get", "nodes", "-o", "json").stdout)["items"]
        return sum(any(c["type"] == "Ready" and c["status"] == "True" for c in n.get("status", {}).get("conditions", []))
                   for n in nodes)

    # ---- an API server outage (clients must ride it out)

    def component(self, name: str) -> Component:
        """The running component of that name (a local cluster only)."""
        return next(c for c in self.components if c.name == name)

    def stop_apiserver(self) -> None:
        """Stop only the kube-apiserver (etcd keeps the state): clients get connection refused."""
        if self.external:
            raise RuntimeError("an existing cluster's API server is not ours to stop")
        self.component("kube-apiserver").stop()

    def start_apiserver(self, timeout: float = 120) -> None:
        """Start it again with the same arguments (port, certificates); returns once /readyz answers ok."""
        apiserver = self.component("kube-apiserver")
        apiserver.start()
        pki = self.workdir / "pki"
        admin = ssl.create_default_context(cafile=str(pki / "ca_cert.pem"))
        admin.load_cert_chain(str(pki / "admin_cert.pem"), str(pki / "admin_key.pem"))
        self._wait(apiserver, f"{self.server}/readyz", timeout, admin, expect="ok")

    def stop(self) -> None:
        """Stop every component (reverse order); remove the temp dir unless it is to be kept."""
        for component in reversed(self.components):
            component.stop()
        self.components.clear()
        if not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tails(self) -> str:
        return "\n".join(c.tail() for c in self.components)
