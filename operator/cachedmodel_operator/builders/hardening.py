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
