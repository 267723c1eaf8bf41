"""`cachedmodel-operator run` as a real subprocess against a cluster (k8s tests and the operator bench).

OperatorProcess starts the console script with the cluster's admin KUBECONFIG, waits for kopf's
liveness endpoint, keeps the log in a file (tail() for failure messages), and stops it with SIGTERM
(SIGKILL after a deadline). `restart()` simulates an operator pod being replaced.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from cachedmodel_operator.testing.processes import free_port, wait_until

REPO = Path(__file__).resolve().parents[3]
CRD_FILE = REPO / "charts/cachedmodel-operator/crds/cachedmodels.cachedmodel.dev.yaml"


def operator_command() -> list[str]:
    """The installed console script (next to this interpreter), else `python -m cachedmodel_operator.cli`."""
    script = Path(sys.executable).with_name("cachedmodel-operator")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cachedmodel_operator.cli"]


class OperatorProcess:
    def __init__(self, kubeconfig: str, namespaces: list[str] | None = None, resync_seconds: float = 5,
                 extra_env: dict[str, str] | None = None, log_dir: Path | None = None, scrape: bool = False):
        self.kubeconfig = kubeconfig
        # status.cache scraping is off unless asked for: the operator runs on the host here, and kwok pods'
        # addresses are nobody's (test traffic goes to 127.0.0.0/8 and the test's own bridge only); a test
        # that wants it passes scrape=True with CACHEDMODEL_METRICS_URL pointing at its own page
        self.scrape = scrape
        self.namespaces = namespaces or []
        self.resync_seconds = resync_seconds
        self.extra_env = extra_env or {}
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="cachedmodel-operator-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_dir / "operator.log"
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.starts = 0

    # ---- lifecycle
    def start(self, timeout: float = 60) -> "OperatorProcess":
        self.port = free_port()
        args = [*operator_command(), "run", "--liveness", f"http://127.0.0.1:{self.port}/healthz"]
        args += [arg for ns in self.namespaces for arg in ("--namespace", ns)] or ["--all-namespaces"]
        env = {**os.environ, "KUBECONFIG": self.kubeconfig, "WATCH_NAMESPACES": "",
               "CACHEDMODEL_RESYNC_SECONDS": str(self.resync_seconds), "PYTHONUNBUFFERED": "1", **self.extra_env}
        if not self.scrape:
            env["CACHEDMODEL_SCRAPE_SECONDS"] = "0"
        self.starts += 1
        log = open(self.log_path, "a")
        log.write(f"==== start #{self.starts} {time.strftime('%H:%M:%S')} ====\n")
        log.flush()
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        try:
            wait_until(self.healthy, timeout, interval=0.1, what="operator liveness endpoint")
        except TimeoutError as error:
            self.stop()
            raise RuntimeError(f"{error}\n--- operator log ---\n{self.tail()}") from None
        return self

    def healthy(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"operator exited with {self.proc.returncode if self.proc else None}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self, timeout: float = 15) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def kill(self) -> None:
        """Abrupt end (SIGKILL), like a node loss."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> "OperatorProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- diagnostics
    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no operator log>"

    def wait(self, predicate, timeout: float, what: str, interval: float = 0.2):
        """wait_until, with the operator's log tail in the failure message."""
        try:
            return wait_until(predicate, timeout, interval=interval, what=what)
        except TimeoutError as error:
            raise AssertionError(f"{error}\n--- operator log tail ---\n{self.tail()}") from None


def install_crd(cluster, timeout: float = 60) -> None:
    """kubectl apply the chart's CRD file and wait until it is Established."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
    wait_until(lambda: crd_established(cluster), timeout, interval=0.2, what="CRD cachedmodels.cachedmodel.dev Established")


def crd_established(cluster, name: str = "cachedmodels.cachedmodel.dev") -> bool:
    """Polled instead of `kubectl wait --for=condition=Established`, which fails outright ("status.conditions
    accessor error: <nil>") when it reads the CRD before the API server wrote any condition (seen under load)."""
    result = cluster.kubectl("get", "crd", name, "-o", "jsonpath={.status.conditions[?(@.type=='Established')].status}",
                             check=False)
    return result.returncode == 0 and result.stdout.strip() == "True"
