#!/usr/bin/env bash
# Build (or reuse) the pinned Kubernetes test tools: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kwok and helm, from the Go module proxy into $TOOLS_CACHE (see
# scripts/build_tools.py for versions and layout). A second run only checks the cache.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v go >/dev/null || { echo "make tools needs Go (go1.26+) on PATH" >&2; exit 1; }
exec python3 -m scripts.build_tools "$@"
