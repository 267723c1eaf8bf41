#!/usr/bin/env bash
# `make kind-e2e`: the e2e suite (tests/e2e) against a real kind cluster, where pods really run.
#
#   1. check docker, kind, kubectl, helm (kubectl/helm from `make tools` when built);
#   2. build the images (`make images`), pull the Redis image the example uses;
#   3. create the kind cluster of kind-config.yaml with its own kubeconfig (your ~/.kube/config is
#      left alone) and `kind load docker-image` the four images, so the node pulls nothing;
#   4. run `pytest tests/e2e` with CACHEDMODEL_KUBECONFIG=<that kubeconfig> and CACHEDMODEL_REAL_PODS=1:
#      the same suite `make test` runs on the local control plane, plus the real-traffic tests —
#      helm install, the operator Deployment running in the cluster, the example CachedModel Ready,
#      predictions through `kubectl port-forward`, the second identical request a cache hit, chart
#      upgrade, spec change, helm uninstall leaving nothing behind;
#   5. delete the cluster (trap: also on failure or Ctrl-C), after printing diagnostics on failure.
#
# Environment: KIND_CLUSTER_NAME (default cachedmodel-e2e), KEEP_CLUSTER=1 keeps the cluster for
# debugging (the kubeconfig path is printed), SKIP_BUILD=1 reuses images already built,
# PYTEST_ARGS extra pytest arguments (e.g. "-x -k upgrade"), KIND_CONFIG another kind config (default
# kind-config.yaml; e.g. a node image built locally, for a machine that cannot pull kindest/node),
# CACHEDMODEL_REDIS_IMAGE the Redis image loaded into the node and run by the CachedModels of the
# suite (default redis:7.2, the example's; e.g. a local build where Docker Hub is out of reach).
set -euo pipefail
cd "$(dirname "$0")/.."

KIND_RELEASE=v0.33            # kind-config.yaml pins a node image built by this kind release
CLUSTER=${KIND_CLUSTER_NAME:-cachedmodel-e2e}
OPERATOR_IMAGE=cachedmodel/operator:0.1.0
MODEL_IMAGE=cachedmodel/insurance-charges-model:0.1.0
IRIS_IMAGE=cachedmodel/iris-model:0.1.0          # the second example model (tests/e2e/test_real_pods_own_model.py)
REDIS_IMAGE=${CACHEDMODEL_REDIS_IMAGE:-redis:7.2}   # default: the example CachedModel's spec.redis.image
KIND_CONFIG=${KIND_CONFIG:-kind-config.yaml}
PYTHON=.venv/bin/python

log() { printf '[kind-e2e %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf '[kind-e2e] error: %s\n' "$*" >&2; exit 1; }

# kubectl and helm of `make tools` (the versions `make test` uses) when they are built.
if [[ -x "$PYTHON" ]]; then
  toolset=$("$PYTHON" -c 'from scripts.build_tools import toolset_bin_dir; print(toolset_bin_dir())' 2>/dev/null || true)
  if [[ -n "$toolset" && -x "$toolset/helm" && -x "$toolset/kubectl" ]]; then
    PATH="$toolset:$PATH"
    export CACHEDMODEL_K8S_BIN_DIR="$toolset"
  fi
fi

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || die "$tool not found on PATH (kind-e2e needs Docker and kind; kubectl and helm come from \`make tools\` or your own)"
done
[[ -x "$PYTHON" ]] || die "$PYTHON missing: run \`make setup\` first"
docker info >/dev/null 2>&1 || die "the Docker engine is not reachable (\`docker info\` fails): start it or fix DOCKER_HOST"
kind_version=$(kind version | awk '{print $2}')
[[ "$kind_version" == "$KIND_RELEASE".* ]] ||
  log "warning: kind $kind_version; kind-config.yaml's node image is the one kind $KIND_RELEASE.x supports"
if [[ -z "${CACHEDMODEL_K8S_BIN_DIR:-}" ]]; then
  # The test fixtures run kubectl/helm from one directory: point them at the ones on PATH.
  bin_dir=$(mktemp -d)
  ln -s "$(command -v kubectl)" "$bin_dir/kubectl"
  ln -s "$(command -v helm)" "$bin_dir/helm"
  export CACHEDMODEL_K8S_BIN_DIR="$bin_dir"
fi
[[ -f "$KIND_CONFIG" ]] || die "KIND_CONFIG=$KIND_CONFIG: no such file (a path relative to the repository root, or absolute)"
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  die "a kind cluster named $CLUSTER already exists: delete it (kind delete cluster --name $CLUSTER) or set KIND_CLUSTER_NAME"
fi

workdir=$(mktemp -d -t cachedmodel-kind-e2e.XXXXXX)
export KUBECONFIG="$workdir/kubeconfig"
created=0

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  set +e  # clean up as much as possible whatever fails here
  if [[ $created == 1 && $status != 0 ]]; then
    log "failed (exit $status): cluster state for diagnosis"
    kubectl get nodes -o wide 2>&1 || true
    kubectl get cachedmodels -A 2>&1 || true
    kubectl get all,events -A -o wide 2>&1 | tail -n 150 || true
    kubectl get pods -A -l app.kubernetes.io/name=cachedmodel-operator \
      -o jsonpath='{range .items[*]}{.metadata.namespace}{" "}{.metadata.name}{"\n"}{end}' 2>/dev/null |
      while read -r ns pod; do
        echo "--- operator log $ns/$pod"
        kubectl logs -n "$ns" "$pod" --tail=100 2>&1
      done
  fi
  if [[ $created == 1 && "${KEEP_CLUSTER:-0}" == 1 ]]; then
    log "KEEP_CLUSTER=1: keeping cluster $CLUSTER (KUBECONFIG=$KUBECONFIG); delete it with: kind delete cluster --name $CLUSTER"
  else
    if [[ $created == 1 ]]; then
      log "deleting kind cluster $CLUSTER"
      kind delete cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG" || true
    fi
    rm -rf "$workdir"
  fi
  [[ -n "${bin_dir:-}" ]] && rm -rf "$bin_dir"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ "${SKIP_BUILD:-0}" == 1 ]]; then
  log "SKIP_BUILD=1: using the images already built"
else
  log "building $OPERATOR_IMAGE and $MODEL_IMAGE"
  make images
fi
docker image inspect "$REDIS_IMAGE" >/dev/null 2>&1 || docker pull "$REDIS_IMAGE"

log "creating kind cluster $CLUSTER ($KIND_CONFIG)"
created=1
kind create cluster --name "$CLUSTER" --config "$KIND_CONFIG" --kubeconfig "$KUBECONFIG" --wait 180s

# `kind load docker-image` fails on a pulled multi-platform image (redis) under Docker's containerd
# image store, the default of new Docker 29 installs: `docker save` writes the whole platform index
# but only the host's platform was pulled (kind#3795, "content digest ... not found"). The
# workaround kind documents: save only the host's platform and load the archive.
load_image() {
  local image=$1 platform archive="$workdir/image.tar"
  kind load docker-image --name "$CLUSTER" "$image" && return 0
  platform=$(docker image inspect -f '{{.Os}}/{{.Architecture}}' "$image")
  log "kind load docker-image $image failed: retrying with docker save --platform $platform (kind#3795)"
  docker save --platform "$platform" -o "$archive" "$image"
  kind load image-archive --name "$CLUSTER" "$archive"
  rm -f "$archive"
}

log "loading images into the node"
for image in "$OPERATOR_IMAGE" "$MODEL_IMAGE" "$IRIS_IMAGE" "$REDIS_IMAGE"; do
  load_image "$image"
done

log "running the e2e suite against $CLUSTER (real pods)"
# shellcheck disable=SC2086  # PYTEST_ARGS is a list of arguments on purpose
CACHEDMODEL_KUBECONFIG="$KUBECONFIG" CACHEDMODEL_REAL_PODS=1 CACHEDMODEL_REDIS_IMAGE="$REDIS_IMAGE" \
  "$PYTHON" -m pytest tests/e2e -m e2e -v ${PYTEST_ARGS:-}
log "e2e passed on kind"
