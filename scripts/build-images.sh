#!/usr/bin/env bash
# `make images`: build the model-service, operator, Redis and pause images into $IMAGES_CACHE
# (default ~/.cache/cachedmodel-images), keyed by what each is built from, with `docker save`
# archives and a manifest (images.json) for a node's containerd. With a running Docker engine it
# builds on the users' bases; without one (these machines) it runs its own dockerd for the build and
# makes the bases with debootstrap. See scripts/build_images.py and docs/images.md.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v python3 >/dev/null || { echo "make images needs python3" >&2; exit 1; }
exec python3 -m scripts.build_images "$@"
