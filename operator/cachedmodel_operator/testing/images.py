"""Where `make images` left the images: its manifest, for fixtures that load images into a node.

`make images` (scripts/build_images.py) writes $IMAGES_CACHE/images.json (default
~/.cache/cachedmodel-images/images.json)::

    {"version": 1, "engine": "own-dockerd" | "docker", "engine_version": "20.10.24+dfsg1",
     "bases": "local" | "upstream", "written": "2026-12-01T08:30:00Z",
     "images": {"operator": {"image": "cachedmodel/operator:0.1.0",
                             "archive": "/root/.cache/cachedmodel-images/archives/cachedmodel_operator_0.1.0.tar",
                             "key": "<sha256 of what it was built from>", "size_bytes": 368000000,
                             "build_seconds": 40.2, "cached": false, "id": "sha256:..."},
                ...}}

The images of IMAGES have a `docker save` archive (`ctr -n k8s.io images import ARCHIVE`); the bases
("debian", "python", "model-runtime") are listed with archive null. With local bases, "redis" is
cachedmodel-local/redis:7.0-bookworm (Debian's redis-server), not redis:7.2: a CachedModel run on such a
node names `images_manifest()["images"]["redis"]["image"]` in spec.redis.image.

Standard library only; never imported by the operator itself.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

# The images a node imports, by the names the manifest uses ("model-runtime", the base of the two model
# images, is listed in the manifest too, without an archive: no pod runs it).
IMAGES = frozenset({"model-service", "iris-model", "operator", "redis", "pause"})

MANIFEST_VERSION = 1


class ImagesNotBuilt(FileNotFoundError):
    """No usable manifest: `make images` has not run (or ran for another IMAGES_CACHE)."""


def images_cache() -> Path:
    """$IMAGES_CACHE, else ~/.cache/cachedmodel-images (what the Makefile passes to the build)."""
    return Path(os.environ.get("IMAGES_CACHE") or Path.home() / ".cache" / "cachedmodel-images").expanduser().absolute()


def manifest_path() -> Path:
    return images_cache() / "images.json"


def images_manifest() -> dict:
    """The manifest of the last `make images`, checked: every image of IMAGES there with its archive on disk."""
    path = manifest_path()
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ImagesNotBuilt(f"{path} not found: run `make images`") from None
    except ValueError as error:
        raise ImagesNotBuilt(f"{path} is not JSON ({error}): run `make images`") from None
    if manifest.get("version") != MANIFEST_VERSION:
        raise ImagesNotBuilt(f"{path} has version {manifest.get('version')!r}, expected {MANIFEST_VERSION}: "
                             "run `make images`")
    images = manifest.get("images") or {}
    missing = sorted(IMAGES - images.keys())
    if missing:
        raise ImagesNotBuilt(f"{path} lacks {', '.join(missing)}: run `make images`")
    for name in sorted(IMAGES):
        archive = images[name].get("archive")
        if not archive or not Path(archive).is_file():
            raise ImagesNotBuilt(f"{path}: the archive of {name} ({archive}) is missing: run `make images`")
    return manifest


def image_ref(name: str, manifest: dict | None = None) -> str:
    """The tag of one image (e.g. image_ref("redis") -> "cachedmodel-local/redis:7.0-bookworm")."""
    return (manifest or images_manifest())["images"][name]["image"]


def archives(manifest: dict | None = None) -> dict[str, Path]:
    """Name -> `docker save` archive of every image a node imports."""
    manifest = manifest or images_manifest()
    return {name: Path(manifest["images"][name]["archive"]) for name in sorted(IMAGES)}
