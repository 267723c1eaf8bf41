"""Build the pinned Kubernetes test tools from the Go module proxy into a cache outside the repo.

Why: the operator and chart are tested against a real control plane, and this machine has no
Docker and no download site, only the Go module proxy. Each tool is built once per version into
$TOOLS_CACHE/<name>-<version>/bin; a later run finds the stamp file and skips it.

Run through `make tools` (scripts/build-tools.sh). Uses the standard library only, so it runs
before the project's venv exists. The fixtures import `toolset_bin_dir()` from here to find the
binaries, so the versions below are the single source of truth.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

# Pinned versions. etcd is the one Kubernetes v1.34.4 itself requires (go.etcd.io/etcd in its
# go.mod); helm v3.19 is built on the same k8s.io v0.34 libraries; kwok manages nodes and pods
# through the plain API and works with any recent server.
K8S_VERSION = "v1.34.4"
ETCD_VERSION = "v3.6.4"
KWOK_VERSION = "v0.8.0"
HELM_VERSION = "v3.19.5"
# A real node for the e2e tier: kubelet and kube-proxy of the same release, CoreDNS for cluster DNS,
# and SIG Network's kube-network-policies to enforce NetworkPolicy on the plain bridge CNI.
COREDNS_VERSION = "v1.14.7"
NETPOL_VERSION = "v0.8.0"
# Monitoring (chart's PrometheusRule, ServiceMonitor, PodMonitor): promtool, Prometheus's own rule tester
# (module v0.3XX.Y = Prometheus 3.XX.Y), and the Prometheus Operator's CRDs, as its Go module ships them.
PROMETHEUS_VERSION = "v0.315.1"
PROMETHEUS_OPERATOR_VERSION = "v0.85.0"
PROMETHEUS_OPERATOR_CRDS = ("servicemonitors", "podmonitors", "prometheusrules")

# Bumped when the build recipe changes, so stale cached builds are redone.
RECIPE = "3"


def prometheus_release(module_version: str) -> str:
    """Prometheus's own version of a github.com/prometheus/prometheus module version (v0.315.1 -> 3.15.1)."""
    major_minor = int(module_version.removeprefix("v").split(".")[1])
    patch = module_version.removeprefix("v").split(".")[2]
    return f"{major_minor // 100}.{major_minor % 100}.{patch}"


def tools_cache() -> Path:
    """$TOOLS_CACHE (made absolute: the toolset's symlinks point into it), else ~/.cache/cachedmodel-tools."""
    return Path(os.environ.get("TOOLS_CACHE") or Path.home() / ".cache" / "cachedmodel-tools").expanduser().absolute()


def toolset_bin_dir(cache: Path | None = None) -> Path:
    """Directory of links to every binary of this set of versions (what the fixtures use)."""
    cache = cache or tools_cache()
    key = (f"k8s-{K8S_VERSION}_etcd-{ETCD_VERSION}_kwok-{KWOK_VERSION}_helm-{HELM_VERSION}"
           f"_coredns-{COREDNS_VERSION}_netpol-{NETPOL_VERSION}")
    return cache / "toolsets" / key / "bin"


def promtool_path(cache: Path | None = None) -> Path:
    """promtool of PROMETHEUS_VERSION (built by `make tools`; not part of the toolset links above)."""
    return (cache or tools_cache()) / f"promtool-{PROMETHEUS_VERSION}" / "bin" / "promtool"


def prometheus_operator_crds_dir(cache: Path | None = None) -> Path:
    """The Prometheus Operator CRDs of PROMETHEUS_OPERATOR_VERSION (copied from its module by `make tools`)."""
    return (cache or tools_cache()) / f"prometheus-operator-crds-{PROMETHEUS_OPERATOR_VERSION}"


@dataclass
class Tool:
    """One `go build` in its own throwaway module: the packages it builds and the binaries it makes."""

    name: str
    version: str
    module: str  # module required at `version`
    packages: list[str]
    binaries: list[str]
    ldflags: list[str] = field(default_factory=list)
    replaces: dict[str, str] = field(default_factory=dict)  # module -> "module version"

    @property
    def key(self) -> str:
        return f"{self.name}-{self.version}"


def log(message: str) -> None:
    print(f"[tools {time.strftime('%H:%M:%S')}] {message}", flush=True)


def go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CGO_ENABLED", "0")  # static binaries, no C toolchain needed
    env["GOFLAGS"] = "-mod=mod -buildvcs=false"
    # Our throwaway modules must never join a workspace: a go.work in a parent of $TOOLS_CACHE (e.g. in
    # $HOME) or a GOWORK setting would make `go mod tidy`/`go build` refuse them or -mod=mod.
    env["GOWORK"] = "off"
    env.setdefault("GOTOOLCHAIN", "local")
    return env


def run(cmd: list[str], cwd: Path) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=go_env(), text=True, capture_output=True)
    if result.returncode != 0:
        raise SystemExit(f"command failed ({result.returncode}): {' '.join(cmd)}\n{result.stderr[-4000:]}")
    return result.stdout


def module_info(module: str, version: str, workdir: Path) -> dict:
    """`go mod download -json` of one module version: its go.mod path and VCS origin (commit)."""
    return json.loads(run(["go", "mod", "download", "-json", f"{module}@{version}"], workdir))


def staging_replaces(kubernetes_gomod: str, k8s_version: str) -> dict[str, str]:
    """Turn k8s.io/kubernetes' `k8s.io/x => ./staging/src/k8s.io/x` lines into published versions.

    The staging modules are published as v0.Y.Z for Kubernetes v1.Y.Z; deriving the list from
    that version's own go.mod keeps it right when the version changes.
    """
    staging_version = "v0." + k8s_version.removeprefix("v1.")
    replaces = {}
    for module in re.findall(r"^\s*(\S+)\s+=>\s+\./staging/src/\S+\s*$", kubernetes_gomod, re.MULTILINE):
        replaces[module] = f"{module} {staging_version}"
    if "k8s.io/api" not in replaces:
        raise SystemExit("found no staging replace lines in k8s.io/kubernetes go.mod; has its layout changed?")
    return replaces


def k8s_version_ldflags(version: str, commit: str, build_date: str) -> list[str]:
    """What hack/lib/version.sh sets, so `--version` and /version report the real release.

    The module proxy gives no commit for k8s.io/kubernetes, so gitCommit may stay empty;
    buildDate is the release's publication time from the proxy (reproducible builds).
    """
    major, minor = version.removeprefix("v").split(".")[:2]
    flags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        for var, value in (("gitVersion", version), ("gitMajor", major), ("gitMinor", minor),
                           ("gitCommit", commit), ("gitTreeState", "clean"), ("buildDate", build_date)):
            flags.append(f"-X {pkg}.{var}={value}")
    return flags


TOOLS = [  # etcd first (small: a control plane can start early), Kubernetes next (the long pole)
    Tool("etcd", ETCD_VERSION, "go.etcd.io/etcd/server/v3", ["go.etcd.io/etcd/server/v3"], ["etcd"]),
    Tool("k8s", K8S_VERSION, "k8s.io/kubernetes",
         [f"k8s.io/kubernetes/cmd/{c}" for c in ("kube-apiserver", "kube-controller-manager",
                                                 "kube-scheduler", "kubectl")],
         ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"]),
    Tool("kwok", KWOK_VERSION, "sigs.k8s.io/kwok", ["sigs.k8s.io/kwok/cmd/kwok"], ["kwok"]),
    Tool("helm", HELM_VERSION, "helm.sh/helm/v3", ["helm.sh/helm/v3/cmd/helm"], ["helm"]),
    # the node: a separate build of the same module (the Go build cache shares its packages)
    Tool("k8s-node", K8S_VERSION, "k8s.io/kubernetes",
         [f"k8s.io/kubernetes/cmd/{c}" for c in ("kubelet", "kube-proxy")], ["kubelet", "kube-proxy"]),
    Tool("coredns", COREDNS_VERSION, "github.com/coredns/coredns", ["github.com/coredns/coredns"], ["coredns"]),
    Tool("netpol", NETPOL_VERSION, "sigs.k8s.io/kube-network-policies",
         ["sigs.k8s.io/kube-network-policies/cmd"], ["netpol"]),
]
# Built like the others but kept out of the toolset links (its key stays what the fixtures know).
MONITORING_TOOLS = [
    Tool("promtool", PROMETHEUS_VERSION, "github.com/prometheus/prometheus",
         ["github.com/prometheus/prometheus/cmd/promtool"], ["promtool"]),
]


def resolve(tool: Tool, workdir: Path) -> None:
    """Fill in version ldflags and replace lines; asks the module proxy, so only done before a build."""
    info = module_info(tool.module, tool.version, workdir)
    commit = info.get("Origin", {}).get("Hash", "")
    kube_minor = K8S_VERSION.removeprefix("v").split(".")[1]
    if tool.name == "etcd":
        tool.ldflags = [f"-X go.etcd.io/etcd/api/v3/version.GitSHA={commit[:7]}"] if commit else []
    elif tool.name in ("k8s", "k8s-node"):
        released = json.loads(Path(info["Info"]).read_text()).get("Time", "")
        tool.ldflags = k8s_version_ldflags(tool.version, commit, released)
        tool.replaces = staging_replaces(Path(info["GoMod"]).read_text(), tool.version)
    elif tool.name == "coredns":
        tool.ldflags = [f"-X github.com/coredns/coredns/coremain.GitCommit={commit[:7]}"] if commit else []
    elif tool.name == "promtool":
        pkg = "github.com/prometheus/common/version"
        tool.ldflags = [f"-X {pkg}.Version={prometheus_release(tool.version)}", f"-X {pkg}.Revision={commit}",
                        f"-X {pkg}.Branch=HEAD", f"-X {pkg}.BuildUser=cachedmodel-make-tools"]
    elif tool.name == "kwok":
        tool.ldflags = [f"-X sigs.k8s.io/kwok/pkg/consts.Version={tool.version}",
                        f"-X sigs.k8s.io/kwok/pkg/consts.KubeVersion={K8S_VERSION}"]
    elif tool.name == "helm":
        pkg = "helm.sh/helm/v3"
        tool.ldflags = [f"-X {pkg}/internal/version.version={tool.version}",
                        f"-X {pkg}/internal/version.gitCommit={commit}",
                        f"-X {pkg}/internal/version.gitTreeState=clean",
                        f"-X {pkg}/pkg/lint/rules.k8sVersionMajor=1",
                        f"-X {pkg}/pkg/lint/rules.k8sVersionMinor={kube_minor}",
                        f"-X {pkg}/pkg/chartutil.k8sVersionMajor=1",
                        f"-X {pkg}/pkg/chartutil.k8sVersionMinor={kube_minor}"]


def stamp_path(cache: Path, tool: Tool) -> Path:
    return cache / tool.key / ".built"


def is_cached(cache: Path, tool: Tool) -> bool:
    bin_dir = cache / tool.key / "bin"
    stamp = stamp_path(cache, tool)
    return (stamp.is_file() and stamp.read_text().strip() == RECIPE
            and all((bin_dir / b).is_file() for b in tool.binaries))


def write_module(moddir: Path, tool: Tool) -> None:
    """A throwaway main module that requires the tool's module (and pins staging modules)."""
    if moddir.exists():
        shutil.rmtree(moddir)
    moddir.mkdir(parents=True)
    lines = [f"module cachedmodel.local/tools/{tool.name}", "", "go 1.24.0", "",
             f"require {tool.module} {tool.version}", ""]
    if tool.replaces:
        lines.append("replace (")
        lines += [f"\t{module} => {target}" for module, target in sorted(tool.replaces.items())]
        lines.append(")")
    (moddir / "go.mod").write_text("\n".join(lines) + "\n")
    imports = "\n".join(f'\t_ "{p}"' for p in tool.packages)
    (moddir / "tools.go").write_text(f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n")


def go_build(moddir: Path, outdir: Path, tool: Tool) -> None:
    """One `go build` for all of the tool's binaries (they share compiled packages); prints progress."""
    # A single package is named explicitly (etcd's main package path ends in "/v3").
    output = str(outdir / tool.binaries[0]) if len(tool.packages) == 1 else str(outdir) + "/"
    cmd = ["go", "build", "-v", "-trimpath", "-ldflags", " ".join(["-s", "-w", *tool.ldflags]),
           "-o", output, *tool.packages]
    proc = subprocess.Popen(cmd, cwd=moddir, env=go_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    compiled, tail, started, done = [0], [], time.monotonic(), threading.Event()

    def report_progress() -> None:
        while not done.wait(30):
            log(f"  {tool.key}: {compiled[0]} packages compiled, {time.monotonic() - started:.0f}s")

    threading.Thread(target=report_progress, daemon=True).start()
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        tail = (tail + [line])[-40:]
        if line and not line.startswith(("#", " ", "\t")) and " " not in line:
            compiled[0] += 1  # -v prints one package path per compiled package
    done.set()
    if proc.wait() != 0:
        raise SystemExit(f"go build of {tool.key} failed:\n" + "\n".join(tail))
    log(f"  {tool.key}: {compiled[0]} packages compiled in {time.monotonic() - started:.0f}s")


def build(cache: Path, tool: Tool) -> None:
    moddir = cache / "build" / tool.key
    resolve(tool, cache / "build")
    write_module(moddir, tool)
    log(f"{tool.key}: resolving modules (go mod tidy)")
    run(["go", "mod", "tidy"], moddir)
    outdir = cache / tool.key / "bin.partial"
    if outdir.exists():
        shutil.rmtree(outdir)
    outdir.mkdir(parents=True)
    log(f"{tool.key}: building {', '.join(tool.binaries)}")
    go_build(moddir, outdir, tool)
    final = cache / tool.key / "bin"
    if final.exists():
        shutil.rmtree(final)
    outdir.rename(final)
    stamp_path(cache, tool).write_text(RECIPE + "\n")
    shutil.rmtree(moddir, ignore_errors=True)


def link_toolset(cache: Path, tools: list[Tool]) -> Path:
    """One directory holding every binary of this version set (links), for PATH and the fixtures."""
    bin_dir = toolset_bin_dir(cache)
    bin_dir.mkdir(parents=True, exist_ok=True)
    for tool in tools:
        for binary in tool.binaries:
            link, target = bin_dir / binary, cache / tool.key / "bin" / binary
            if link.is_symlink() and link.readlink() == target:
                continue
            temporary = bin_dir / f".{binary}.new"
            temporary.unlink(missing_ok=True)
            temporary.symlink_to(target)
            temporary.replace(link)  # atomic: tests running meanwhile never see it missing
    return bin_dir


def fetch_prometheus_operator_crds(cache: Path) -> Path:
    """Copy the Prometheus Operator's ServiceMonitor, PodMonitor and PrometheusRule CRDs out of its Go module
    (example/prometheus-operator-crd/ in the module zip) into a directory keyed by its version."""
    target = prometheus_operator_crds_dir(cache)
    names = [f"monitoring.coreos.com_{plural}.yaml" for plural in PROMETHEUS_OPERATOR_CRDS]
    stamp = target / ".built"
    if stamp.is_file() and stamp.read_text().strip() == RECIPE and all((target / n).is_file() for n in names):
        log(f"prometheus-operator-crds-{PROMETHEUS_OPERATOR_VERSION}: cached ({target})")
        return target
    info = module_info("github.com/prometheus-operator/prometheus-operator", PROMETHEUS_OPERATOR_VERSION,
                       cache / "build")
    source = Path(info["Dir"]) / "example" / "prometheus-operator-crd"
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for name in names:
        shutil.copyfile(source / name, partial / name)
    (partial / ".built").write_text(RECIPE + "\n")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    log(f"prometheus-operator-crds-{PROMETHEUS_OPERATOR_VERSION}: copied {len(names)} CRDs to {target}")
    return target


def try_lock(lock_file) -> bool:
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def main() -> int:
    started = time.monotonic()
    cache = tools_cache()
    workdir = cache / "build"
    workdir.mkdir(parents=True, exist_ok=True)
    lock = open(cache / ".lock", "w")
    if not try_lock(lock):
        log(f"another `make tools` is using {cache}; waiting for it")
        fcntl.flock(lock, fcntl.LOCK_EX)
    for tool in TOOLS + MONITORING_TOOLS:
        if is_cached(cache, tool):
            log(f"{tool.key}: cached ({cache / tool.key / 'bin'})")
        else:
            log(f"{tool.key}: not cached, building with {run(['go', 'version'], workdir).strip()}")
            tool_started = time.monotonic()
            build(cache, tool)
            log(f"{tool.key}: built in {time.monotonic() - tool_started:.0f}s")
    bin_dir = link_toolset(cache, TOOLS)
    fetch_prometheus_operator_crds(cache)
    log(f"all tools ready in {bin_dir} ({time.monotonic() - started:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
