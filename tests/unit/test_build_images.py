"""Pure parts of `make images` (scripts/build_images.py): the .dockerignore rules and the build contexts
assembled from them, the cache keys, the manifest and its reader (cachedmodel_operator.testing.images),
the host's apt sources, and the engine's network-safe flags. No Docker, no network."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from cachedmodel_operator.testing import images as images_helper
from scripts import build_images as bi

ROOT = Path(__file__).resolve().parents[2]
PROJECT_DOCKERFILES = [ROOT / "images" / name / "Dockerfile" for name in ("operator", "model-runtime", "model-service",
                                                                         "iris-model")]
MODEL_DOCKERFILES = [ROOT / "images" / name / "Dockerfile" for name in ("model-service", "iris-model")]


# ---------------------------------------------------------------- .dockerignore rules

def test_rules_follow_dockers_semantics():
    rules = bi.parse_dockerignore("# comment\n*\n!src/\n!a.txt\n**/__pycache__\nsrc/gen/*.bin\n!src/gen/keep.bin\n\n")
    assert [(r.pattern, r.negated) for r in rules] == [
        ("*", False), ("src", True), ("a.txt", True), ("**/__pycache__", False), ("src/gen/*.bin", False),
        ("src/gen/keep.bin", True)]
    excluded = {path: bi.is_excluded(path, rules) for path in (
        "b.txt", "a.txt", ".git/config", "src/x.py", "src/deep/er/y.py", "src/__pycache__/x.pyc",
        "src/deep/__pycache__/y.pyc", "src/gen/out.bin", "src/gen/keep.bin", "src/gen/sub/out.bin")}
    assert excluded == {"b.txt": True, "a.txt": False, ".git/config": True, "src/x.py": False,
                        "src/deep/er/y.py": False, "src/__pycache__/x.pyc": True, "src/deep/__pycache__/y.pyc": True,
                        "src/gen/out.bin": True, "src/gen/keep.bin": False, "src/gen/sub/out.bin": False}


def test_wildcards_do_not_cross_directories_but_double_star_does():
    rules = bi.parse_dockerignore("docs/*.md\n**/*.log\n/build\nfile?.txt\n[ab].cfg\n")
    assert bi.is_excluded("docs/a.md", rules) and not bi.is_excluded("docs/sub/a.md", rules)
    assert bi.is_excluded("x.log", rules) and bi.is_excluded("a/b/c.log", rules)
    assert bi.is_excluded("build/out/x", rules), "a leading / is the context root; a directory covers its files"
    assert bi.is_excluded("file1.txt", rules) and not bi.is_excluded("file10.txt", rules)
    assert bi.is_excluded("a.cfg", rules) and not bi.is_excluded("c.cfg", rules)


def copy_sources(dockerfile: Path) -> list[str]:
    """Sources of the COPY lines that read the build context (not --from=stage)."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    sources = []
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            sources += [w for w in words[1:-1] if not w.startswith("--")]
    return sources


@pytest.mark.parametrize("dockerfile", PROJECT_DOCKERFILES, ids=lambda p: p.parent.name)
def test_context_has_what_the_dockerfile_copies_and_nothing_its_rules_exclude(dockerfile):
    rules = bi.parse_dockerignore(bi.dockerignore_of(dockerfile).read_text())
    files = bi.context_files(ROOT, rules)
    for source in copy_sources(dockerfile):
        if source.endswith("/"):
            assert any(f.startswith(source) for f in files), f"COPY {source}: nothing under it in the context"
        else:
            assert source in files, f"COPY {source}: not in the context"
    for path in files:
        assert not bi.is_excluded(path, rules), path
        assert not re.search(r"(^|/)(__pycache__|\.git|\.venv[^/]*|[^/]*\.egg-info)(/|$)", path), path
        assert not re.search(r"model_files/.*\.(joblib|json)$", path), "the model is trained in the build"
    top = {f.split("/")[0] for f in files}
    assert top <= {"src", "examples", "operator", "charts", "requirements", "pyproject.toml", "README.md"}, top


def test_context_of_a_tree_keeps_included_files_and_symlinks_and_drops_the_rest(tmp_path):
    root = tmp_path / "repo"
    for rel in ("pkg/mod.py", "pkg/__pycache__/mod.cpython-311.pyc", "pkg/data/big.joblib", "crds/crd.yaml",
                ".git/HEAD", ".venv/bin/python", "notes.txt"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    (root / "pkg" / "data" / "crd.yaml").symlink_to("../../crds/crd.yaml")
    os.chmod(root / "pkg" / "mod.py", 0o755)
    rules = bi.parse_dockerignore("*\n!pkg/\n!crds/\n**/__pycache__\npkg/data/*.joblib\n")
    files = bi.context_files(root, rules)
    assert files == ["crds/crd.yaml", "pkg/data/crd.yaml", "pkg/mod.py"]
    dest = tmp_path / "ctx"
    bi.assemble_context(root, files, dest)
    assert (dest / "pkg" / "data" / "crd.yaml").is_symlink()
    assert (dest / "pkg" / "data" / "crd.yaml").read_text() == "crds/crd.yaml", "the link resolves inside the context"
    assert os.access(dest / "pkg" / "mod.py", os.X_OK)


# ---------------------------------------------------------------- keys

def key_of(root: Path, rules_text: str, dockerfile: bytes = b"FROM x\n", args: dict | None = None,
           bases: dict | None = None, work: Path | None = None) -> str:
    work = work or root.parent / "ctx"
    if work.exists():
        import shutil
        shutil.rmtree(work)
    rules = bi.parse_dockerignore(rules_text)
    bi.assemble_context(root, bi.context_files(root, rules), work)
    return bi.image_key("app", "app:1", dockerfile, bi.tree_digest(work), args or {"A": "1"},
                        bases if bases is not None else {"python": "k1"})


def test_key_changes_with_every_input_and_only_with_them(tmp_path):
    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    (root / "src" / "a.py").write_text("a = 1\n")
    (root / "README.md").write_text("readme\n")
    rules = "*\n!src/\n**/__pycache__\n"
    key = key_of(root, rules)
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    assert key_of(root, rules) == key, "same inputs, same key"

    # not inputs: mtimes, excluded files, files outside the context
    os.utime(root / "src" / "a.py", (1, 1))
    (root / "src" / "__pycache__").mkdir()
    (root / "src" / "__pycache__" / "a.pyc").write_bytes(b"\0")
    (root / "README.md").write_text("edited\n")
    assert key_of(root, rules) == key

    # inputs: each changes the key
    changed = {
        "dockerfile": key_of(root, rules, dockerfile=b"FROM y\n"),
        "build arg": key_of(root, rules, args={"A": "2"}),
        "base key": key_of(root, rules, bases={"python": "k2"}),
        "rules that send another file": key_of(root, rules + "!README.md\n"),
    }
    (root / "src" / "a.py").write_text("a = 2\n")
    changed["content"] = key_of(root, rules)
    os.chmod(root / "src" / "a.py", 0o755)
    changed["executable bit"] = key_of(root, rules)
    (root / "src" / "b.py").write_text("")
    changed["new file"] = key_of(root, rules)
    (root / "src" / "c.py").symlink_to("b.py")
    changed["new symlink"] = key_of(root, rules)
    assert key not in changed.values() and len(set(changed.values())) == len(changed), changed


def test_key_does_not_depend_on_where_the_context_was_assembled(tmp_path):
    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    (root / "src" / "a.py").write_text("a\n")
    assert key_of(root, "*\n!src/\n", work=tmp_path / "one") == key_of(root, "*\n!src/\n", work=tmp_path / "two")


# ---------------------------------------------------------------- manifest

def fake_manifest(cache: Path, names=images_helper.IMAGES) -> dict:
    (cache / "archives").mkdir(parents=True)
    entries = {}
    for name in sorted(names):
        archive = cache / "archives" / bi.archive_name(f"example/{name}:1")
        archive.write_bytes(b"tar")
        entries[name] = bi.manifest_entry(f"example/{name}:1", str(archive), "k" * 64, 123456789, 12.34, False,
                                          "sha256:" + "0" * 64)
    entries["python"] = bi.manifest_entry(bi.LOCAL_PYTHON, None, "p" * 64, 1, 0.04, True)
    document = bi.manifest_document("own-dockerd", "20.10.24+dfsg1", "local", entries)
    bi.write_manifest(cache, document)
    return document


def test_manifest_format_and_its_reader(tmp_path, monkeypatch):
    monkeypatch.setenv("IMAGES_CACHE", str(tmp_path))
    fake_manifest(tmp_path)
    on_disk = json.loads((tmp_path / "images.json").read_text())
    assert on_disk["version"] == images_helper.MANIFEST_VERSION == bi.MANIFEST_VERSION
    assert on_disk["engine"] == "own-dockerd" and on_disk["bases"] == "local"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", on_disk["written"])
    for entry in on_disk["images"].values():
        assert set(entry) == {"image", "archive", "key", "size_bytes", "build_seconds", "cached", "id"}
        assert isinstance(entry["size_bytes"], int) and isinstance(entry["build_seconds"], float)
        assert isinstance(entry["cached"], bool)
    assert on_disk["images"]["operator"]["build_seconds"] == 12.3
    assert on_disk["images"]["python"]["archive"] is None, "bases are not imported into nodes"

    assert images_helper.manifest_path() == tmp_path / "images.json"
    assert images_helper.images_manifest() == on_disk
    assert images_helper.image_ref("redis") == "example/redis:1"
    assert set(images_helper.archives()) == images_helper.IMAGES
    assert all(path.is_file() for path in images_helper.archives().values())


def test_reader_says_run_make_images_when_there_is_nothing_usable(tmp_path, monkeypatch):
    monkeypatch.setenv("IMAGES_CACHE", str(tmp_path))
    with pytest.raises(images_helper.ImagesNotBuilt, match="run `make images`"):
        images_helper.images_manifest()
    document = fake_manifest(tmp_path)
    Path(document["images"]["pause"]["archive"]).unlink()
    with pytest.raises(images_helper.ImagesNotBuilt, match="archive of pause"):
        images_helper.images_manifest()
    (tmp_path / "images.json").write_text("{")
    with pytest.raises(images_helper.ImagesNotBuilt, match="not JSON"):
        images_helper.images_manifest()


def test_helper_and_build_agree_on_names_and_cache():
    assert set(bi.NODE_IMAGES) == images_helper.IMAGES
    assert bi.images_cache() == images_helper.images_cache()


def test_archive_names_are_plain_file_names():
    assert bi.archive_name("cachedmodel/insurance-charges-model:0.1.0") == "cachedmodel_insurance-charges-model_0.1.0.tar"
    assert "/" not in bi.archive_name("a/b/c:d@sha256:00")


# ---------------------------------------------------------------- plan, apt sources, engine

def test_project_images_build_on_their_bases_under_their_shipping_tags():
    plan = bi.plan("local")
    specs = {spec.name: spec for spec in plan}
    assert {name: spec.image for name, spec in specs.items()} == {
        "operator": "cachedmodel/operator:0.1.0", "model-runtime": "cachedmodel/model-runtime:0.1.0",
        "model-service": "cachedmodel/insurance-charges-model:0.1.0", "iris-model": "cachedmodel/iris-model:0.1.0"}
    assert specs["operator"].bases == specs["model-runtime"].bases == ["python"]
    assert specs["model-service"].bases == specs["iris-model"].bases == ["model-runtime"]
    names = [spec.name for spec in plan]
    for position, spec in enumerate(plan):
        assert spec.context == "repo" and not spec.build_args
        for base in spec.bases:  # built before, or a base made by build_all before the plan
            assert base in names[:position] or base == "python", (spec.name, base)
            default = {"python": bi.UPSTREAM_PYTHON, "model-runtime": bi.RUNTIME_IMAGE}[base]
            assert f"ARG {bi.BASE_ARGS[base]}={default}\n" in spec.dockerfile.read_text(), "users' default base"
    assert bi.LOCAL_REDIS.endswith(":7.0-bookworm"), "Debian's redis is 7.0: tagged for what it is"
    for dockerfile in ("python.Dockerfile", "redis.Dockerfile"):
        assert "ARG DEBIAN_IMAGE=" + bi.LOCAL_DEBIAN in (ROOT / "images" / "base" / dockerfile).read_text()


def test_apt_sources_deb822_and_one_line():
    entries = bi.parse_apt_sources({
        "debian.sources": "Types: deb\n# comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
                          "Components: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\n"
                          "Suites: bookworm-security\nComponents: main\n\nEnabled: no\nTypes: deb\nURIs: http://x\n"
                          "Suites: bookworm\n",
        "sources.list": "deb [arch=amd64] http://other.example/debian trixie main contrib # x\n# deb http://y bookworm main\n",
    })
    assert entries == [
        {"types": ["deb"], "uris": ["http://mirror.example/debian"], "suites": ["bookworm", "bookworm-updates"],
         "components": ["main"]},
        {"types": ["deb"], "uris": ["http://mirror.example/debian-security"], "suites": ["bookworm-security"],
         "components": ["main"]},
        {"types": ["deb"], "uris": ["http://other.example/debian"], "suites": ["trixie"], "components": ["main", "contrib"]},
    ]
    assert bi.debian_mirror(entries) == "http://mirror.example/debian"
    with pytest.raises(SystemExit, match="no `deb` source for bookworm"):
        bi.debian_mirror(entries[2:])


def test_own_dockerd_leaves_the_hosts_network_alone(tmp_path):
    cmd = bi.dockerd_command(tmp_path / "data", tmp_path / "run", tmp_path / "run" / "containerd.sock")
    for flag in ("--iptables=false", "--ip-forward=false", "--ip-masq=false", "--bridge=none"):
        assert flag in cmd
    assert cmd[cmd.index("--data-root") + 1] == str(tmp_path / "data")
    assert cmd[cmd.index("-H") + 1] == f"unix://{tmp_path}/run/docker.sock", "never the host's /var/run/docker.sock"
    assert cmd[cmd.index("--containerd") + 1] == str(tmp_path / "run" / "containerd.sock"), "not a system containerd"
    for option in ("--exec-root", "--pidfile"):
        assert cmd[cmd.index(option) + 1].startswith(str(tmp_path / "run"))


def test_an_incomplete_manifest_never_replaces_a_complete_one(tmp_path):
    complete = fake_manifest(tmp_path)
    assert bi.manifest_is_complete(complete)
    incomplete = json.loads(json.dumps(complete))
    incomplete["images"]["operator"]["archive"] = None
    assert not bi.manifest_is_complete(incomplete)
    assert bi.write_manifest(tmp_path, incomplete) == tmp_path / "images.partial.json"
    assert bi.read_manifest(tmp_path) == complete
    newer = json.loads(json.dumps(complete))
    newer["images"]["operator"]["key"] = "n" * 64
    assert bi.write_manifest(tmp_path, newer) == tmp_path / "images.json"
    assert bi.read_manifest(tmp_path) == newer
    (tmp_path / "images.json").unlink()
    assert bi.write_manifest(tmp_path, incomplete) == tmp_path / "images.json", "better than none"


# ---------------------------------------------------------------- the runtime and the model images

class FakeEngine(bi.Engine):
    """Records builds instead of running them; images "exist" once built, with their key label."""

    def __init__(self):
        super().__init__("docker", {})
        self.labels: dict[str, str] = {}
        self.built: list[list[str]] = []

    def label(self, image):
        return self.labels.get(image)

    def inspect(self, image):
        return {"Id": "sha256:" + "1" * 64, "Size": 1} if image in self.labels else None

    def docker(self, *args, **kwargs):
        if args[0] == "save":
            Path(args[args.index("-o") + 1]).write_bytes(b"tar")
        return bi.subprocess.CompletedProcess(args, 0, b"", b"")


def build_plan(tmp_path: Path, python_key: str, monkeypatch) -> tuple[FakeEngine, dict]:
    engine = FakeEngine()

    def stream(self, name, cmd):
        engine.built.append(cmd)
        engine.labels[cmd[cmd.index("-t") + 1]] = cmd[cmd.index("--label") + 1].split("=", 1)[1]

    monkeypatch.setattr(bi.Builder, "stream", stream)
    builder = bi.Builder(engine, tmp_path / "cache", "host")
    try:
        builder.results["python"] = bi.Result("python", bi.LOCAL_PYTHON, python_key, True, 0.0)
        for spec in bi.plan("local"):
            builder.build(spec)
    finally:
        builder.close()
    return engine, builder.results


def test_model_images_are_built_from_the_runtime_and_keyed_by_it(tmp_path, monkeypatch):
    engine, results = build_plan(tmp_path, "p" * 64, monkeypatch)
    order = [cmd[cmd.index("-t") + 1] for cmd in engine.built]
    assert order.index(bi.RUNTIME_IMAGE) < order.index(bi.MODEL_IMAGE)
    assert order.index(bi.RUNTIME_IMAGE) < order.index(bi.IRIS_IMAGE)
    for cmd in engine.built:
        args = [cmd[i + 1] for i, word in enumerate(cmd) if word == "--build-arg"]
        if cmd[cmd.index("-t") + 1] in (bi.MODEL_IMAGE, bi.IRIS_IMAGE):
            assert args == [f"RUNTIME_IMAGE={bi.RUNTIME_IMAGE}"]
        else:
            assert args == [f"PYTHON_IMAGE={bi.LOCAL_PYTHON}"]
    # the node imports the model images, not the runtime (their archives carry its layers)
    assert results["iris-model"].archive and results["model-service"].archive
    assert results["model-runtime"].archive is None

    # a new python base: a new runtime key, and so new model keys; the operator's changes too
    _, again = build_plan(tmp_path / "again", "q" * 64, monkeypatch)
    for name in ("operator", "model-runtime", "model-service", "iris-model"):
        assert again[name].key != results[name].key, name
    # the same inputs: the same keys, and nothing rebuilt (the engine has the labelled images)
    engine.built.clear()
    builder = bi.Builder(engine, tmp_path / "cache", "host")
    try:
        builder.results["python"] = bi.Result("python", bi.LOCAL_PYTHON, "p" * 64, True, 0.0)
        cached = [builder.build(spec) for spec in bi.plan("local")]
    finally:
        builder.close()
    assert all(result.cached for result in cached) and not engine.built
    assert {result.name: result.key for result in cached} == {name: results[name].key for name in
                                                              ("operator", "model-runtime", "model-service", "iris-model")}


def test_model_images_are_their_package_on_the_runtime_and_nothing_else():
    """The serving contract (CMD, HEALTHCHECK, ENV, uid) lives in the runtime once; a model image only adds."""
    runtime = (ROOT / "images" / "model-runtime" / "Dockerfile").read_text()
    final = runtime[runtime.rindex("\nFROM "):]
    assert 'CMD ["python", "-m", "cachedmodel.service"]' in final and "HEALTHCHECK " in final
    assert re.search(r"^USER 10001:10001$", final, re.M)
    for env in ("PORT=8000", "HOST=0.0.0.0", "REST_CONFIG=/etc/cachedmodel/rest_config.yaml",
                "PYTHONDONTWRITEBYTECODE=1"):
        assert env in final, env
    code = "\n".join(line for line in runtime.splitlines() if not line.startswith("#"))
    assert not re.search(r"scikit|insurance|iris|examples", code, re.I), "the runtime has no model"
    context = bi.context_files(ROOT, bi.parse_dockerignore(
        bi.dockerignore_of(ROOT / "images" / "model-runtime" / "Dockerfile").read_text()))
    assert context and not [f for f in context if f.startswith(("examples/", "operator/", "src/cachedmodel/testing/"))]
    for dockerfile in MODEL_DOCKERFILES:
        text = dockerfile.read_text()
        instructions = [line.split()[0] for line in re.sub(r"\\\n", " ", text).splitlines()
                        if line.strip() and not line.startswith(("#", " "))]
        assert [i for i in instructions if i == "FROM"] == ["FROM"], "one stage, on the runtime"
        assert f"ARG RUNTIME_IMAGE={bi.RUNTIME_IMAGE}\nFROM ${{RUNTIME_IMAGE}}\n" in text
        assert not {"CMD", "ENTRYPOINT", "HEALTHCHECK", "ENV"} & set(instructions), dockerfile
        users = re.findall(r"^USER (.+)$", text, re.M)
        assert users == ["0:0", "10001:10001"], "installs as root, then runs as 10001 again"
        assert re.search(r"^COPY \S+ /etc/cachedmodel/rest_config.yaml$", text, re.M)
        installs = [line for line in re.sub(r"\\\n", " ", text).splitlines() if "pip install" in line]
        assert installs and all("--require-hashes" in line or "--no-build-isolation" in line for line in installs)
        assert "pip uninstall --yes setuptools wheel" in text and "pip check" in text


def read_lock(name: str) -> dict[str, tuple[str, frozenset[str]]]:
    """name -> (version, hashes) of requirements/<name>.lock."""
    entries = {}
    for block in re.sub(r"\\\n", " ", (ROOT / "requirements" / f"{name}.lock").read_text()).splitlines():
        block = block.split("#", 1)[0].strip()
        if block:
            requirement, *hashes = block.split(" --hash=")
            package, _, version = requirement.partition("==")
            entries[package.strip().lower().replace("_", "-")] = (version.strip(), frozenset(h.strip() for h in hashes))
    return entries


def test_image_locks_agree_with_the_runtime_lock_and_the_dev_lock():
    """A model image's lock pins what the runtime has exactly as the runtime does: pip skips it rather
    than replacing the runtime's packages; everything is a tested (dev.lock) version and file."""
    dev, runtime = read_lock("dev"), read_lock("model-runtime")
    assert {"rest-model-service", "uvicorn", "fastapi", "redis", "pyyaml"} <= set(runtime)
    assert not {"scikit-learn", "numpy", "scipy", "joblib", "matplotlib", "pytest"} & set(runtime)
    for image in ("model-runtime", "model-service", "iris-model"):
        lock = read_lock(image)
        assert lock and all(hashes for _, hashes in lock.values()), image
        for package, pin in lock.items():
            assert dev.get(package) == pin, f"{image}.lock: {package} differs from dev.lock"
            if package in runtime:
                assert runtime[package] == pin, f"{image}.lock: {package} differs from model-runtime.lock"
    assert set(runtime) - {"setuptools", "wheel"} <= set(read_lock("model-service")), "the insurance lock is a superset"
    assert {"scikit-learn", "numpy", "joblib", "setuptools", "wheel"} <= set(read_lock("iris-model"))
    for image in ("model-runtime", "iris-model"):
        ignore = bi.dockerignore_of(ROOT / "images" / image / "Dockerfile").read_text()
        assert f"!requirements/{image}.lock" in ignore.splitlines()
