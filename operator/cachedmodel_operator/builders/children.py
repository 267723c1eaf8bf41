"""The full set of children of a CachedModel, in apply order."""
from __future__ import annotations

import secrets

from cachedmodel_operator.builders.autoscaling import model_autoscaler
from cachedmodel_operator.builders.model import model_deployment, model_service
from cachedmodel_operator.builders.redis import (redis_config_map, redis_headless_service, redis_network_policy,
                                                 redis_pdb, redis_secret, redis_service, redis_statefulset,
                                                 sentinel_pdb, sentinel_service, sentinel_statefulset)
from cachedmodel_operator.builders.service_config import config_checksum, service_config_map
from cachedmodel_operator.resource import CachedModel


def desired_children(cm: CachedModel, auth_uid: str | None = None) -> list[dict]:
    """Every child except the password Secret (created once, never re-applied), config before workloads."""
    config = service_config_map(cm)
    children = [config]
    if cm.redis_mode == "managed":
        redis_config = redis_config_map(cm)
        mode = cm.redis["mode"]
        children += [redis_config, redis_headless_service(cm)]
        if mode == "standalone":
            children.append(redis_service(cm))
        if mode == "sentinel":
            children.append(sentinel_service(cm))
        children.append(redis_statefulset(cm, config_checksum(redis_config["data"]), auth_uid))
        if mode == "sentinel":
            children.append(sentinel_statefulset(cm, auth_uid))
        children += [redis_network_policy(cm), redis_pdb(cm)]
        if mode == "sentinel":
            children.append(sentinel_pdb(cm))
    children += [model_deployment(cm, config_checksum(config["data"]), auth_uid), model_service(cm)]
    autoscaler = model_autoscaler(cm)
    if autoscaler:
        children.append(autoscaler)
    return children


def new_password() -> str:
    """256 bits, URL-safe alphabet (safe inside redis.conf quotes and URLs)."""
    return secrets.token_urlsafe(32)


def password_secret(cm: CachedModel, password: str | None = None) -> dict | None:
    """The managed Redis password Secret, or None when Redis is not managed."""
    if cm.redis_mode != "managed":
        return None
    return redis_secret(cm, password or new_password())


def render_all(cm: CachedModel, password: str | None = None) -> list[dict]:
    """What `cachedmodel-operator render` prints: the Secret (with a fresh password) and every child."""
    secret = password_secret(cm, password)
    return ([secret] if secret else []) + desired_children(cm)
