"""CachedModel bodies for the operator unit tests, as the API server would hand them over (defaults applied)."""
import copy

import pytest

from cachedmodel_operator import schema
from cachedmodel_operator.resource import CachedModel
from tests.support.cachedmodel_samples import EVERY_CACHE_OPTION, POD_FIELDS

BASE = {
    "apiVersion": "cachedmodel.dev/v1alpha1",
    "kind": "CachedModel",
    "metadata": {"name": "insurance-charges", "namespace": "ml", "uid": "0d2c8a4e-uid", "generation": 3},
    "spec": {
        "model": {
            "image": "cachedmodel/insurance-charges-model:0.1.0",
            "classPath": "insurance_charges_model.model.InsuranceChargesModel",
            "replicas": 2,
        },
    },
}


def body(**spec_overrides) -> dict:
    """BASE with top-level spec sections replaced (model is merged), defaults applied."""
    out = copy.deepcopy(BASE)
    for section, value in spec_overrides.items():
        if section == "model":
            out["spec"]["model"].update(value)
        else:
            out["spec"][section] = value
    return schema.apply_defaults(out)


def cached_model(**spec_overrides) -> CachedModel:
    return CachedModel.from_body(body(**spec_overrides))


VARIANTS = {
    "managed": {},
    "managed-persistent": {"redis": {"maxmemory": "1gb", "maxmemoryPolicy": "allkeys-lfu",
                                     "persistence": {"enabled": True, "size": "2Gi", "storageClassName": "fast"},
                                     "resources": {"limits": {"memory": "1200Mi"}}}},
    "external": {"redis": {"external": {"url": "rediss://cache.example:6380/2",
                                        "passwordSecretRef": {"name": "cache", "key": "pw"}}}},
    "external-no-password": {"redis": {"external": {"url": "redis://cache.example:6379/0"}}},
    "disabled": {"cache": {"enabled": False}},
    "sentinel": {"redis": {"mode": "sentinel"}},
    "sentinel-replicas": {"redis": {"mode": "sentinel", "sentinel": {"replicas": 4}, "maxmemory": "64mb",
                                    "persistence": {"enabled": True}}},
    "cluster": {"redis": {"mode": "cluster"}},
    "cluster-shaped": {"redis": {"mode": "cluster", "cluster": {"shards": 4, "replicasPerShard": 2}}},
    "external-sentinel": {"redis": {"external": {"sentinels": ["s-0.s:26379", "s-1.s:26379", "10.0.0.3:26379"],
                                                 "sentinelService": "mymaster",
                                                 "sentinelPasswordSecretRef": {"name": "sent", "key": "pw"},
                                                 "passwordSecretRef": {"name": "cache", "key": "pw"}}}},
    "external-cluster": {"redis": {"external": {"clusterNodes": ["c-0.c:6379", "[fd00::1]:6380"], "tls": True,
                                                "username": "cache-user"}}},
    "all-options": {"cache": {"prefix": "v1", "hashingFields": ["age", "bmi"], "serder": "JSON", "compression": True,
                              "reducedPrecision": {"fields": ["bmi"], "numberOfPlaces": 1}, "ttlSeconds": 600,
                              "socketTimeoutSeconds": 0.5, "socketConnectTimeoutSeconds": 0.2,
                              "localCache": {"size": 1000, "ttlSeconds": 5}},
                    "model": {"port": 9000, "imagePullPolicy": "IfNotPresent",
                              "env": [{"name": "LOG_LEVEL", "value": "debug"}],
                              "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": 1073741824}}}},
    "every-cache-option": {"cache": EVERY_CACHE_OPTION},
    "autoscaling": {"model": {"autoscaling": {"minReplicas": 2, "maxReplicas": 5, "behavior": {
        "scaleUp": {"policies": [{"type": "Pods", "value": 2, "periodSeconds": 15}], "selectPolicy": "Max"}}},
        "resources": {"requests": {"cpu": "200m"}}}},
    "pod-fields": POD_FIELDS,
}


@pytest.fixture(params=sorted(VARIANTS))
def variant(request) -> CachedModel:
    return cached_model(**VARIANTS[request.param])
