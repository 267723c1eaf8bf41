"""Pure builder functions: a CachedModel in, Kubernetes manifest dicts out (no I/O)."""
from cachedmodel_operator.builders.children import desired_children, password_secret, render_all
from cachedmodel_operator.builders.model import model_deployment, model_service
from cachedmodel_operator.builders.redis import (redis_config_map, redis_conf, redis_headless_service,
                                                 redis_network_policy, redis_pdb, redis_service,
                                                 redis_statefulset, sentinel_pdb, sentinel_service,
                                                 sentinel_statefulset)
from cachedmodel_operator.builders.service_config import (config_checksum, decorator_configuration,
                                                          service_config, service_config_map)

__all__ = [
    "config_checksum", "decorator_configuration", "desired_children", "model_deployment", "model_service",
    "password_secret", "redis_conf", "redis_config_map", "redis_headless_service", "redis_network_policy",
    "redis_pdb", "redis_service", "redis_statefulset", "render_all", "sentinel_pdb", "sentinel_service",
    "sentinel_statefulset", "service_config", "service_config_map",
]
