"""Build the project's container images into a cache outside the repo (`make images`).

Two routes, chosen by whether `docker info` answers:
- a running Docker engine (a user's): the project images are built as users build them (the operator
  and the model runtime on python:3.11.10-slim-bookworm, the two example model images on the
  runtime), and redis:7.2 is taken as it is (pulled when missing);
- none (these machines: no engine, no registry): Debian's docker.io is installed when missing and an
  engine of our own is started for this build only (own containerd and dockerd, state under the
  cache so images persist, sockets in a temp dir, no iptables/bridge/forwarding changes on the
  host, builds on the host network), then stopped by PID at the end, also on failure or Ctrl-C.
  The bases are made here: a Debian bookworm minbase rootfs from debootstrap, a Python base
  (images/base/python.Dockerfile, carrying the host's CA bundle so pip works in builds) fed to the
  project's Dockerfiles through their PYTHON_IMAGE build arg, a Redis image from Debian's
  redis-server (images/base/redis.Dockerfile) and the pod sandbox image (images/pause/).

Every image is keyed by what it was built from (its Dockerfile, the files of its build context, its
build args and its base's key): an image whose key has not changed is not rebuilt. The legacy
builder ignores Dockerfile.dockerignore, so each build gets a context directory assembled from those
rules (they stay the source of truth). The images a node imports are written as `docker save`
archives to $IMAGES_CACHE/archives/ and described in $IMAGES_CACHE/images.json, which
cachedmodel_operator.testing.images reads.

Standard library only: it runs before the project's venv exists. Run through scripts/build-images.sh.
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Bumped when this build recipe changes in a way the keyed inputs do not show.
RECIPE = "1"
MANIFEST_VERSION = 1
KEY_LABEL = "dev.cachedmodel.images.key"

# What users build on (the Dockerfiles' ARG default) and the Redis the example CachedModel names.
UPSTREAM_PYTHON = "python:3.11.10-slim-bookworm"
UPSTREAM_REDIS = "redis:7.2"
# The local stand-ins, tagged for what they are (Debian's python3 is 3.11.2, its redis 7.0.x).
LOCAL_DEBIAN = "cachedmodel-local/debian:bookworm-minbase"
LOCAL_PYTHON = "cachedmodel-local/python:3.11-bookworm"
LOCAL_REDIS = "cachedmodel-local/redis:7.0-bookworm"
PAUSE = "cachedmodel-local/pause:3.10"
RUNTIME_IMAGE = "cachedmodel/model-runtime:0.1.0"
MODEL_IMAGE = "cachedmodel/insurance-charges-model:0.1.0"
IRIS_IMAGE = "cachedmodel/iris-model:0.1.0"
OPERATOR_IMAGE = "cachedmodel/operator:0.1.0"

# The images a node imports (each gets an archive); the same names as
# cachedmodel_operator.testing.images.IMAGES (a unit test keeps them equal). Not "model-runtime": no
# pod runs it, and a model image's archive carries its layers.
NODE_IMAGES = ("model-service", "iris-model", "operator", "redis", "pause")

# The build arg through which a Dockerfile takes each base's tag.
BASE_ARGS = {"debian": "DEBIAN_IMAGE", "python": "PYTHON_IMAGE", "model-runtime": "RUNTIME_IMAGE"}

DEBIAN_SUITE = "bookworm"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DEB_PACKAGES = {"dockerd": "docker.io", "debootstrap": "debootstrap"}


def images_cache() -> Path:
    """$IMAGES_CACHE, else ~/.cache/cachedmodel-images (absolute)."""
    return Path(os.environ.get("IMAGES_CACHE") or Path.home() / ".cache" / "cachedmodel-images").expanduser().absolute()


def log(message: str) -> None:
    print(f"[images {time.strftime('%H:%M:%S')}] {message}", flush=True)


class BuildError(SystemExit):
    pass


# ---------------------------------------------------------------- .dockerignore rules

@dataclass(frozen=True)
class IgnoreRule:
    pattern: str  # cleaned, slash-separated, no leading "/"
    negated: bool
    regex: re.Pattern

    def matches(self, path: str) -> bool:
        """Docker's rule: the pattern matches the path or one of its parent directories."""
        if self.regex.match(path):
            return True
        parts = path.split("/")
        return any(self.regex.match("/".join(parts[:n])) for n in range(1, len(parts)))


def _pattern_regex(pattern: str) -> re.Pattern:
    """Go filepath.Match syntax plus `**` (any number of directories), as moby's patternmatcher compiles it."""
    out, i = "^", 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            if pattern[i + 1:i + 2] == "*":
                i += 1
                if pattern[i + 1:i + 2] == "/":
                    i += 1
                out += ".*" if i + 1 >= len(pattern) else "(.*/)?"
            else:
                out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                raise ValueError(f"bad .dockerignore pattern (unclosed [): {pattern}")
            body = pattern[i + 1:end]
            out += "[" + ("^" + body[1:] if body.startswith("^") else body).replace("\\", "\\\\") + "]"
            i = end
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(ch)
        i += 1
    return re.compile(out + "$")


def parse_dockerignore(text: str) -> list[IgnoreRule]:
    """The rules of a .dockerignore file, in order (the last rule that matches a path decides)."""
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        if negated:
            line = line[1:].strip()
        pattern = os.path.normpath(line).lstrip("/") if line not in ("/", ".") else "."
        rules.append(IgnoreRule(pattern, negated, _pattern_regex(pattern)))
    return rules


def is_excluded(path: str, rules: list[IgnoreRule]) -> bool:
    excluded = False
    for rule in rules:
        if rule.matches(path):
            excluded = not rule.negated
    return excluded


def _may_include_below(directory: str, rules: list[IgnoreRule]) -> bool:
    """Could an exception rule re-include something under an excluded directory? (else it is pruned)"""
    for rule in rules:
        if not rule.negated:
            continue
        literal = re.split(r"[*?\[\\]", rule.pattern, maxsplit=1)[0]
        if not literal or literal.startswith(directory + "/") or (directory + "/").startswith(literal):
            return True
    return False


def context_files(root: Path, rules: list[IgnoreRule]) -> list[str]:
    """Relative paths (files and symlinks) under root that the rules send to the builder, sorted."""
    found = []
    for current, dirs, files in os.walk(root):
        rel_dir = os.path.relpath(current, root)
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        keep = []
        for name in sorted(dirs):
            rel = rel_dir + name
            if os.path.islink(os.path.join(current, name)):
                files.append(name)
            elif not is_excluded(rel, rules) or _may_include_below(rel, rules):
                keep.append(name)
        dirs[:] = keep
        for name in files:
            rel = rel_dir + name
            if not is_excluded(rel, rules):
                found.append(rel)
    return sorted(found)


def assemble_context(root: Path, files: list[str], dest: Path) -> None:
    """Copy those files (symlinks as symlinks) into dest, keeping their relative paths and modes."""
    for rel in files:
        source, target = root / rel, dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, target)


# ---------------------------------------------------------------- keys

def tree_digest(directory: Path) -> dict[str, str]:
    """Path -> digest of every file of a context: content and executable bit, or a symlink's target."""
    digests = {}
    for current, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(current, d))]):
            path = Path(current, name)
            rel = path.relative_to(directory).as_posix()
            if path.is_symlink():
                digests[rel] = "link:" + os.readlink(path)
            else:
                executable = "x" if os.access(path, os.X_OK) else "-"
                digests[rel] = executable + hashlib.sha256(path.read_bytes()).hexdigest()
    return dict(sorted(digests.items()))


def image_key(name: str, tag: str, dockerfile: bytes, context: dict[str, str], build_args: dict[str, str],
              base_keys: dict[str, str]) -> str:
    """sha256 over everything an image is built from; equal inputs give the same key on any machine."""
    document = {"recipe": RECIPE, "name": name, "tag": tag,
                "dockerfile": hashlib.sha256(dockerfile).hexdigest(), "context": context,
                "build_args": dict(sorted(build_args.items())), "bases": dict(sorted(base_keys.items()))}
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


# ---------------------------------------------------------------- host apt sources

def parse_apt_sources(files: dict[str, str]) -> list[dict]:
    """Entries of one-line (sources.list) and deb822 (*.sources) files: {types, uris, suites, components}."""
    entries = []
    for name, text in files.items():
        if name.endswith(".sources"):
            for stanza in re.split(r"\n\s*\n", text):
                fields, last = {}, None
                for line in stanza.splitlines():
                    if not line.strip() or line.lstrip().startswith("#"):
                        continue
                    if line[0].isspace() and last:
                        fields[last] += " " + line.strip()
                        continue
                    key, _, value = line.partition(":")
                    last = key.strip().lower()
                    fields[last] = value.strip()
                if fields.get("enabled", "yes").lower() == "no" or "uris" not in fields:
                    continue
                entries.append({k: fields.get(k, "").split() for k in ("types", "uris", "suites", "components")})
        else:
            for line in text.splitlines():
                line = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()
                if len(line) >= 3 and line[0] in ("deb", "deb-src"):
                    entries.append({"types": [line[0]], "uris": [line[1]], "suites": [line[2]], "components": line[3:]})
    return entries


def debian_mirror(entries: list[dict], suite: str = DEBIAN_SUITE) -> str:
    """The host's mirror for the suite (debootstrap's MIRROR argument)."""
    for entry in entries:
        if "deb" in entry["types"] and suite in entry["suites"] and entry["uris"]:
            return entry["uris"][0]
    raise BuildError(f"no `deb` source for {suite} in the host's apt sources (/etc/apt/sources.list*)")


def host_apt_sources() -> dict[str, str]:
    files = {}
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        if path.is_file() and (path.name == "sources.list" or path.suffix in (".list", ".sources")):
            files[path.name] = path.read_text()
    return files


def host_apt_settings() -> str:
    """The host's Acquire::Check-* settings (a snapshot mirror needs Check-Valid-Until false), as apt.conf lines."""
    lines = []
    for option in ("Acquire::Check-Valid-Until", "Acquire::Check-Date"):
        result = subprocess.run(["apt-config", "dump", option], capture_output=True, text=True)
        for line in result.stdout.splitlines():
            if line.startswith(option + " "):
                lines.append(line.strip())
    return "\n".join(lines) + ("\n" if lines else "")


# ---------------------------------------------------------------- engines

def run(cmd: list[str], env: dict | None = None, timeout: float | None = None, check: bool = True,
        input: bytes | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, env=env, capture_output=True, timeout=timeout, input=input)
    if check and result.returncode != 0:
        raise BuildError(f"command failed ({result.returncode}): {' '.join(cmd)}\n"
                         f"{result.stderr.decode(errors='replace')[-3000:]}")
    return result


class Engine:
    """A Docker CLI pointed at one engine."""

    kind = "docker"

    def __init__(self, client: str, env: dict[str, str]):
        self.client, self.env = client, env
        self.version = ""

    def docker(self, *args: str, timeout: float | None = None, check: bool = True,
               input: bytes | None = None) -> subprocess.CompletedProcess:
        return run([self.client, *args], env=self.env, timeout=timeout, check=check, input=input)

    def answers(self) -> bool:
        try:
            result = self.docker("info", "--format", "{{.ServerVersion}}", timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return False
        self.version = result.stdout.decode().strip() or "unknown"
        return result.returncode == 0  # the CLI exits 1 when no daemon answers

    def inspect(self, image: str) -> dict | None:
        result = self.docker("image", "inspect", image, check=False)
        try:
            found = json.loads(result.stdout) if result.returncode == 0 else None
        except ValueError:
            found = None
        return found[0] if isinstance(found, list) and found and isinstance(found[0], dict) else None

    def label(self, image: str) -> str | None:
        """The build key an image of ours carries (None: no such image, or not built by us)."""
        found = self.inspect(image) or {}
        return ((found.get("Config") or {}).get("Labels") or {}).get(KEY_LABEL)


def dockerd_command(data_root: Path, tmp: Path, containerd_sock: Path) -> list[str]:
    """Our dockerd: images under data_root, everything else in tmp, and nothing on the host's network:
    no iptables rules, no bridge, no forwarding or masquerading (builds run with --network host)."""
    return ["dockerd", "--data-root", str(data_root), "--exec-root", str(tmp / "exec"),
            "--pidfile", str(tmp / "dockerd.pid"), "-H", f"unix://{tmp}/docker.sock",
            "--containerd", str(containerd_sock), "--iptables=false", "--ip-forward=false",
            "--ip-masq=false", "--bridge=none", "--log-level=warn"]


class OwnEngine(Engine):
    """containerd + dockerd of our own for one build, stopped by PID on exit (also on failure/Ctrl-C).

    State that should persist (images, layers) lives under the cache; sockets, pid files and exec
    state live in a temp dir. No iptables rules, no bridge, no IP forwarding: builds use the host's
    network. Our own containerd too, since dockerd would otherwise adopt a system containerd that
    happens to run (/run/containerd/containerd.sock).
    """

    kind = "own-dockerd"

    def __init__(self, cache: Path):
        self.cache = cache
        self.tmp = Path(tempfile.mkdtemp(prefix="cachedmodel-dockerd-"))
        self.procs: list[tuple[str, subprocess.Popen]] = []
        client = "/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) else (shutil.which("docker") or "docker")
        env = dict(os.environ)
        for name in ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
            env.pop(name, None)
        env.update(DOCKER_HOST=f"unix://{self.tmp}/docker.sock", DOCKER_CONFIG=str(self.tmp / "client"),
                   DOCKER_BUILDKIT="0")
        super().__init__(client, env)

    def _start(self, name: str, cmd: list[str], ready, deadline: float) -> None:
        logfile = open(self.tmp / f"{name}.log", "wb")
        proc = subprocess.Popen(cmd, stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)  # our Ctrl-C handling stops it, in order
        self.procs.append((name, proc))
        end = time.monotonic() + deadline
        while not ready():
            if proc.poll() is not None or time.monotonic() > end:
                tail = (self.tmp / f"{name}.log").read_text(errors="replace")[-3000:]
                raise BuildError(f"{name} did not start ({'exited ' + str(proc.returncode) if proc.poll() is not None else 'timeout'}):\n{tail}")
            time.sleep(0.2)

    def __enter__(self) -> OwnEngine:
        root = self.cache / "engine"
        (root / "containerd").mkdir(parents=True, exist_ok=True)
        (root / "docker").mkdir(parents=True, exist_ok=True)
        sock = self.tmp / "containerd.sock"
        (self.tmp / "containerd.toml").write_text(
            "version = 2\n"
            f'root = "{root / "containerd"}"\n'
            f'state = "{self.tmp / "containerd-state"}"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\n  address = "{sock}"\n'
            f'[ttrpc]\n  address = "{sock}.ttrpc"\n'
            f'[debug]\n  address = "{self.tmp / "containerd-debug.sock"}"\n'
            '[metrics]\n  address = ""\n')
        try:
            self._start("containerd", ["containerd", "--config", str(self.tmp / "containerd.toml")],
                        sock.exists, 60)
            self._start("dockerd", dockerd_command(root / "docker", self.tmp, sock), self.answers, 120)
        except BaseException:
            self.stop()
            raise
        log(f"own dockerd {self.version} up (data root {root / 'docker'}, client {self.client})")
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        for name, proc in reversed(self.procs):  # dockerd before its containerd
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    log(f"{name} (pid {proc.pid}) ignored SIGTERM for 60 s: killing it")
                    proc.kill()
                    proc.wait(10)
        self.procs.clear()
        # Mounts under our roots that a killed engine left behind (normally none).
        if unmount_below(self.cache / "engine", self.tmp):
            shutil.rmtree(self.tmp, ignore_errors=True)


def unmount_below(*roots: Path) -> bool:
    """Unmount (lazily, deepest first) what is mounted at or below the roots; True when none is left.

    Before any rmtree of ours: a killed debootstrap leaves /proc and /sys mounted in its target."""
    prefixes = tuple(str(root) for root in roots)

    def mounted() -> list[str]:
        with open("/proc/self/mounts") as mounts:
            points = [line.split()[1].replace("\\040", " ") for line in mounts]
        return [p for p in points if any(p == r or p.startswith(r + "/") for r in prefixes)]

    for point in sorted(mounted(), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)
    left = mounted()
    if left:
        log(f"still mounted, not removed: {' '.join(left)}")
    return not left


def ensure_packages(names: list[str]) -> None:
    """Install Debian packages that are missing, without starting their services."""
    missing = [pkg for binary, pkg in DEB_PACKAGES.items() if pkg in names and not shutil.which(binary)
               and not os.access(f"/usr/sbin/{binary}", os.X_OK)]
    if not missing:
        return
    if os.geteuid() != 0:
        raise BuildError(f"no Docker engine answers and {' '.join(missing)} is missing: start Docker, or run as root "
                         "so that `make images` can install Debian's packages and run its own engine")
    log(f"installing {' '.join(missing)} (apt)")
    policy = Path("/usr/sbin/policy-rc.d")
    added_policy = not policy.exists()
    if added_policy:  # installing docker.io must not start a system dockerd (it would change iptables)
        policy.write_text("#!/bin/sh\n# cachedmodel make images: no service starts during this install\nexit 101\n")
        policy.chmod(0o755)
    try:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        lock = ["-o", "DPkg::Lock::Timeout=600"]
        run(["apt-get", *lock, "update", "-qq"], env=env)
        run(["apt-get", *lock, "install", "-y", "-qq", "--no-install-recommends", *missing], env=env)
    finally:
        if added_policy:
            policy.unlink()


# ---------------------------------------------------------------- images

@dataclass
class Result:
    name: str
    image: str
    key: str
    cached: bool
    seconds: float
    size_bytes: int = 0
    archive: str | None = None
    image_id: str = ""
    note: str = ""

    def entry(self) -> dict:
        return manifest_entry(self.image, self.archive, self.key, self.size_bytes, self.seconds, self.cached,
                              self.image_id)


def manifest_entry(image: str, archive: str | None, key: str, size_bytes: int, build_seconds: float, cached: bool,
                   image_id: str = "") -> dict:
    return {"image": image, "archive": archive, "key": key, "size_bytes": int(size_bytes),
            "build_seconds": round(float(build_seconds), 1), "cached": bool(cached), "id": image_id}


def manifest_document(engine: str, engine_version: str, bases: str, results: dict[str, dict]) -> dict:
    return {"version": MANIFEST_VERSION, "engine": engine, "engine_version": engine_version, "bases": bases,
            "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "images": results}


def manifest_is_complete(document: dict) -> bool:
    """Every node image there with an archive (what a node's import needs)."""
    images = document.get("images") or {}
    return all((images.get(name) or {}).get("archive") for name in NODE_IMAGES)


def write_manifest(cache: Path, document: dict) -> Path:
    """images.json, atomically; an incomplete manifest never replaces a complete one (images.partial.json)."""
    path = cache / "images.json"
    if not manifest_is_complete(document) and manifest_is_complete(read_manifest(cache)):
        path = cache / "images.partial.json"
        log(f"not every node image has an archive: kept {cache / 'images.json'}, wrote {path}")
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def read_manifest(cache: Path) -> dict:
    try:
        return json.loads((cache / "images.json").read_text())
    except (OSError, ValueError):
        return {}


def archive_name(image: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", image) + ".tar"


@dataclass
class Spec:
    """One `docker build`: a Dockerfile, how its context is made, its build args and bases."""

    name: str
    image: str
    dockerfile: Path  # in the repo
    context: str  # "repo": the repo filtered by Dockerfile.dockerignore; "dir": a dir of its own
    build_args: dict[str, str] = field(default_factory=dict)
    bases: list[str] = field(default_factory=list)  # names of earlier specs/results it builds on
    extra_files: dict[str, Path] = field(default_factory=dict)  # context name -> host file (dir contexts)


def dockerignore_of(dockerfile: Path) -> Path:
    return dockerfile.with_name(dockerfile.name + ".dockerignore")


def make_context(spec: Spec, dest: Path) -> Path:
    """Fill dest with the build context; returns the Dockerfile path to pass with -f."""
    if spec.context == "repo":
        rules = parse_dockerignore(dockerignore_of(spec.dockerfile).read_text())
        assemble_context(ROOT, context_files(ROOT, rules), dest)
    else:
        for name, source in spec.extra_files.items():
            shutil.copy2(source, dest / name)
    dockerfile = dest / spec.dockerfile.relative_to(ROOT)
    dockerfile.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(spec.dockerfile, dockerfile)
    return dockerfile


class Builder:
    def __init__(self, engine: Engine, cache: Path, network: str):
        self.engine, self.cache, self.network = engine, cache, network
        self.previous = read_manifest(cache).get("images", {})
        self.results: dict[str, Result] = {}
        self.work = Path(tempfile.mkdtemp(prefix="cachedmodel-images-"))
        (cache / "archives").mkdir(parents=True, exist_ok=True)
        (cache / "logs").mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        if unmount_below(self.work):
            shutil.rmtree(self.work, ignore_errors=True)

    def finish(self, name: str, image: str, key: str, cached: bool, started: float, note: str = "") -> Result:
        found = self.engine.inspect(image) or {}
        result = Result(name, image, key, cached, time.monotonic() - started, found.get("Size", 0),
                        image_id=found.get("Id", ""), note=note)
        if name in NODE_IMAGES:
            result.archive = self.save(name, image, key, result.image_id)
        result.seconds = time.monotonic() - started
        self.results[name] = result
        log(f"{name}: {image} {'cached' if cached else 'built'} in {result.seconds:.1f} s"
            f" ({result.size_bytes / 1e6:.0f} MB){' ' + note if note else ''}")
        return result

    def save(self, name: str, image: str, key: str, image_id: str) -> str | None:
        """`docker save` for a node's containerd import, unless the archive of this very image is there."""
        path = self.cache / "archives" / archive_name(image)
        before = self.previous.get(name, {})
        if (path.is_file() and before.get("archive") == str(path) and before.get("key") == key
                and before.get("id") == image_id):
            return str(path)
        tmp = path.with_suffix(".tar.tmp")
        saved = self.engine.docker("save", "-o", str(tmp), image, check=False)
        if saved.returncode != 0:
            # Docker's containerd image store cannot save a pulled multi-platform image whole (only the
            # host's platform was pulled: kind#3795); save that platform (docker >= 28).
            found = self.engine.inspect(image) or {}
            platform = f"{found.get('Os', 'linux')}/{found.get('Architecture', 'amd64')}"
            log(f"{name}: docker save failed ({saved.stderr.decode(errors='replace').strip()[-200:]}); "
                f"retrying with --platform {platform}")
            self.engine.docker("save", "--platform", platform, "-o", str(tmp), image)
        if not tmp.is_file():  # only a stand-in CLI does this; a node cannot use the image then
            log(f"{name}: `docker save` wrote no archive: the manifest lists none for {image}")
            return None
        os.replace(tmp, path)
        return str(path)

    def build(self, spec: Spec) -> Result:
        started = time.monotonic()
        ctx = self.work / spec.name
        ctx.mkdir()
        dockerfile = make_context(spec, ctx)
        bases = {base: self.results[base].key for base in spec.bases}
        args = dict(spec.build_args)
        for base in spec.bases:  # a base's tag goes in through the build arg the Dockerfile declares
            args[BASE_ARGS[base]] = self.results[base].image
        files = tree_digest(ctx)
        files.pop(spec.dockerfile.relative_to(ROOT).as_posix())  # keyed by its bytes below
        key = image_key(spec.name, spec.image, spec.dockerfile.read_bytes(), files, args, bases)
        if self.engine.label(spec.image) == key:
            return self.finish(spec.name, spec.image, key, True, started)
        log(f"{spec.name}: building {spec.image} ({len(files)} context files)")
        cmd = [self.engine.client, "build", "-f", str(dockerfile), "-t", spec.image, "--label", f"{KEY_LABEL}={key}"]
        if self.network:
            cmd += ["--network", self.network]
        for name, value in sorted(args.items()):
            cmd += ["--build-arg", f"{name}={value}"]
        self.stream(spec.name, cmd + [str(ctx)])
        shutil.rmtree(ctx, ignore_errors=True)
        return self.finish(spec.name, spec.image, key, False, started)

    def stream(self, name: str, cmd: list[str]) -> None:
        """Run a build with its output in logs/<name>.log and its steps on the console."""
        logpath = self.cache / "logs" / f"{name}.log"
        with open(logpath, "w") as logfile:
            proc = subprocess.Popen(cmd, env=self.engine.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, errors="replace")
            for line in proc.stdout:
                logfile.write(line)
                if re.match(r"(Step \d+/\d+ : |#\d+ \[)", line):
                    print(f"    {name}: {line.rstrip()[:150]}", flush=True)
            proc.wait()
        if proc.returncode != 0:
            tail = "".join(logpath.read_text(errors="replace").splitlines(keepends=True)[-40:])
            raise BuildError(f"{name}: docker build failed ({proc.returncode}); full log {logpath}\n{tail}")

    # ---- the local bases

    def debian_base(self) -> Result:
        """Debian bookworm minbase from debootstrap, with the host's apt sources, imported as an image."""
        started = time.monotonic()
        sources = host_apt_sources()
        mirror = debian_mirror(parse_apt_sources(sources))
        apt_settings = host_apt_settings()
        files = {f"sources/{k}": hashlib.sha256(v.encode()).hexdigest() for k, v in sources.items()}
        files["apt.conf"] = hashlib.sha256(apt_settings.encode()).hexdigest()
        files["minimize"] = hashlib.sha256(MINIMIZE_SCRIPT.encode()).hexdigest()
        key = image_key("debian", LOCAL_DEBIAN, b"debootstrap --variant=minbase", files,
                        {"suite": DEBIAN_SUITE, "mirror": mirror}, {})
        if self.engine.label(LOCAL_DEBIAN) == key:
            return self.finish("debian", LOCAL_DEBIAN, key, True, started)
        log(f"debian: debootstrap --variant=minbase {DEBIAN_SUITE} from {mirror}")
        rootfs = self.work / "rootfs"
        debs = self.cache / "debootstrap-debs"
        debs.mkdir(exist_ok=True)
        logpath = self.cache / "logs" / "debian.log"
        with open(logpath, "w") as logfile:
            result = subprocess.run(["debootstrap", "--variant=minbase", f"--cache-dir={debs}", DEBIAN_SUITE,
                                     str(rootfs), mirror], stdout=logfile, stderr=subprocess.STDOUT)
        if result.returncode != 0:
            raise BuildError(f"debootstrap failed ({result.returncode}); log {logpath}\n"
                             + logpath.read_text(errors="replace")[-3000:])
        # Apt inside the builds sees what the host's apt sees (same mirror, suites and settings).
        (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
        for name, text in sources.items():
            target = rootfs / "etc/apt" / (name if name == "sources.list" else f"sources.list.d/{name}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        if apt_settings:
            (rootfs / "etc/apt/apt.conf.d/99cachedmodel-host").write_text(apt_settings)
        subprocess.run(["sh", "-c", MINIMIZE_SCRIPT, "minimize", str(rootfs)], check=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run([self.engine.client, "import", "--change", f"LABEL {KEY_LABEL}={key}",
                                   "--change", 'CMD ["bash"]',
                                   "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                   "-", LOCAL_DEBIAN],
                                  stdin=tar.stdout, env=self.engine.env, capture_output=True)
        tar.stdout.close()
        if tar.wait() != 0 or imported.returncode != 0:
            raise BuildError(f"docker import failed: {imported.stderr.decode(errors='replace')[-2000:]}")
        if unmount_below(rootfs):
            shutil.rmtree(rootfs, ignore_errors=True)
        return self.finish("debian", LOCAL_DEBIAN, key, False, started)

    def pause(self) -> Result | None:
        """The pod sandbox image: images/pause/main.go built static onto scratch."""
        go = shutil.which("go") or ("/usr/local/go/bin/go" if os.access("/usr/local/go/bin/go", os.X_OK) else None)
        if go is None:
            return None
        src = ROOT / "images" / "pause"
        out = self.work / "pause-bin"
        out.mkdir()
        env = dict(os.environ, CGO_ENABLED="0", GOWORK="off", GOTOOLCHAIN="local", GOFLAGS="-mod=mod -buildvcs=false")
        result = subprocess.run([go, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(out / "pause"), "."],
                                cwd=src, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise BuildError(f"pause: go build failed\n{result.stderr[-2000:]}")
        # Keyed by the binary (reproducible with -trimpath: same source and Go, same bytes).
        return self.build(Spec("pause", PAUSE, src / "Dockerfile", "dir", extra_files={"pause": out / "pause"}))

    def upstream(self, name: str, image: str) -> Result:
        """A base taken as it is (a user's engine): present, or pulled; keyed by its image ID."""
        started = time.monotonic()
        pulled = False
        if self.engine.inspect(image) is None:
            log(f"{name}: pulling {image}")
            self.engine.docker("pull", "--quiet", image, timeout=1800)
            pulled = True
        found = self.engine.inspect(image) or {}
        key = found.get("Id") or f"ref:{image}"  # an engine that cannot say: keyed by the reference
        return self.finish(name, image, key, not pulled, started, note="(pulled)" if pulled else "(as it is)")


MINIMIZE_SCRIPT = r"""
# What Docker's debian:*-slim images do (debuerreotype): no services start inside builds, no docs,
# man pages or translations from later installs, no package caches kept.
set -e
r="$1"
printf '#!/bin/sh\nexit 101\n' > "$r/usr/sbin/policy-rc.d"
chmod 755 "$r/usr/sbin/policy-rc.d"
cat > "$r/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
cat > "$r/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
echo 'Acquire::Languages "none";' > "$r/etc/apt/apt.conf.d/docker-no-languages"
rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/archives/*.deb "$r"/var/cache/apt/*.bin "$r"/var/log/*.log \
       "$r"/usr/share/man/* "$r"/usr/share/info/*
find "$r/usr/share/doc" ! -type d ! -name copyright -delete
find "$r/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
find "$r/usr/share/doc" -mindepth 1 -type d -empty -delete
"""


def plan(bases: str) -> list[Spec]:
    """The project's images, in build order: the operator and the model runtime on the "python" base built
    or taken before them (its tag goes in as PYTHON_IMAGE), then the model images on the runtime (as
    RUNTIME_IMAGE; the runtime's key is part of theirs, so a runtime change rebuilds them)."""
    return [
        Spec("operator", OPERATOR_IMAGE, ROOT / "images/operator/Dockerfile", "repo", bases=["python"]),
        Spec("model-runtime", RUNTIME_IMAGE, ROOT / "images/model-runtime/Dockerfile", "repo", bases=["python"]),
        Spec("model-service", MODEL_IMAGE, ROOT / "images/model-service/Dockerfile", "repo", bases=["model-runtime"]),
        Spec("iris-model", IRIS_IMAGE, ROOT / "images/iris-model/Dockerfile", "repo", bases=["model-runtime"]),
    ]


def print_table(results: dict[str, Result], total: float, manifest: Path) -> None:
    print()
    print(f"{'image':<15} {'tag':<44} {'size':>8} {'time':>8}  state")
    for result in results.values():
        state = "cached" if result.cached else "built"
        print(f"{result.name:<15} {result.image:<44} {result.size_bytes / 1e6:>6.0f}MB {result.seconds:>7.1f}s  "
              f"{state}{' ' + result.note if result.note else ''}")
    print(f"total {total:.1f} s; manifest {manifest}", flush=True)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bases", choices=("auto", "local", "upstream"), default="auto",
                        help="auto: upstream bases with a running Docker engine, local (debootstrap) otherwise")
    options = parser.parse_args(argv)
    started = time.monotonic()
    cache = images_cache()
    cache.mkdir(parents=True, exist_ok=True)
    # SIGTERM (e.g. a CI timeout) unwinds like Ctrl-C, so our engine is stopped either way.
    signal.signal(signal.SIGTERM, _interrupt)
    with open(cache / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"another `make images` holds {cache / '.lock'}: waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        user = Engine(shutil.which("docker") or "docker", dict(os.environ))
        if user.answers():
            log(f"using the running Docker engine {user.version}")
            network = os.environ.get("IMAGES_BUILD_NETWORK", "")  # the engine's default unless asked
            return build_all(user, cache, "upstream" if options.bases == "auto" else options.bases, network, started)
        if os.geteuid() != 0:
            raise BuildError("no Docker engine answers (`docker info` failed): start Docker, or run `make images` "
                             "as root so that it can run an engine of its own (Debian's docker.io) for the build")
        log("no Docker engine answers: starting our own for this build")
        ensure_packages(["docker.io", "debootstrap"])
        with OwnEngine(cache) as engine:
            network = os.environ.get("IMAGES_BUILD_NETWORK") or "host"  # our engine has no bridge
            return build_all(engine, cache, "local" if options.bases == "auto" else options.bases, network, started)


def build_all(engine: Engine, cache: Path, bases: str, network: str, started: float) -> int:
    if bases == "local" and os.geteuid() != 0:
        raise BuildError("local bases need debootstrap, which needs root")
    builder = Builder(engine, cache, network)
    try:
        if bases == "local":
            builder.debian_base()
            builder.build(Spec("python", LOCAL_PYTHON, ROOT / "images/base/python.Dockerfile", "dir",
                               bases=["debian"], extra_files={"ca-certificates.crt": HOST_CA_BUNDLE}))
            builder.build(Spec("redis", LOCAL_REDIS, ROOT / "images/base/redis.Dockerfile", "dir", bases=["debian"]))
        else:
            builder.upstream("python", UPSTREAM_PYTHON)
            builder.upstream("redis", UPSTREAM_REDIS)
        if builder.pause() is None:
            if bases == "local":
                raise BuildError("the pause image needs Go on PATH (the one `make tools` uses)")
            log("pause: skipped (no Go on PATH); a Docker user's cluster brings its own")
        for spec in plan(bases):
            builder.build(spec)
    finally:
        builder.close()
    document = manifest_document(engine.kind, engine.version, bases,
                                 {name: result.entry() for name, result in builder.results.items()})
    path = write_manifest(cache, document)
    print_table(builder.results, time.monotonic() - started, path)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted: engine stopped")
        sys.exit(130)
