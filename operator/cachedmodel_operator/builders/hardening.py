"""The security settings every pod the operator makes shares: non-root, no privilege escalation,
read-only root filesystem, no capabilities, the runtime's seccomp profile (restricted Pod Security)."""
from __future__ import annotations


def container_security_context() -> dict:
    """A fresh dict each call, so no two manifests share (and could alter) one object."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def pod_security_context(uid: int) -> dict:
    """Run as `uid` (user, group and volume group), never as root."""
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def hardened_pod_spec(uid: int, containers: list[dict], volumes: list[dict]) -> dict:
    """A pod spec with no API token and no service-link env vars (the pods never call the API), run as `uid`."""
    return {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(uid),
        "containers": containers,
        "volumes": volumes,
    }
