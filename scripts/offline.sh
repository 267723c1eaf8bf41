#!/usr/bin/env bash
# Run a command with no network but loopback: a new network namespace (needs root or user
# namespaces). Where neither is available it says so and runs the command as it is.
set -euo pipefail
if unshare --net true 2>/dev/null; then
    exec unshare --net bash -c 'ip link set lo up 2>/dev/null || true; exec "$@"' offline "$@"
fi
echo "offline.sh: cannot make a network namespace here (not root?); running with the host network" >&2
exec "$@"
