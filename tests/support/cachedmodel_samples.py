"""CachedModel spec sections shared by the operator's unit tests and the k8s tier (one sample, two tiers)."""

# spec.cache with every behaviour option of the decorator set (issue 19)
EVERY_CACHE_OPTION = {
    "ttlSeconds": 600, "singleFlight": False, "sharedSingleFlight": True, "leaseSeconds": 2.5, "staleSeconds": 30,
    "earlyRefreshBeta": 1.5, "maxConnections": 20, "poolTimeoutSeconds": 0.5, "redisInfoIntervalSeconds": 0,
    "circuitBreaker": {"failures": 5, "resetSeconds": 2}, "epoch": 3,
}

# spec.model and spec.redis with every pod field set (valid core/v1 shapes)
POD_FIELDS = {
    "model": {
        "imagePullSecrets": [{"name": "registry"}],
        "serviceAccountName": "model-reader",
        "priorityClassName": "high",
        "nodeSelector": {"pool": "cpu", "kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"},
                        {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}],
        "affinity": {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}]}},
            "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 50, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": {
                    "matchLabels": {"app.kubernetes.io/instance": "insurance-charges"}}}}]},
        },
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                       "whenUnsatisfiable": "ScheduleAnyway"}],
        "podLabels": {"team": "pricing", "app.kubernetes.io/version": "1.2"},
        "podAnnotations": {"example.com/owner": "pricing team"},
        "volumes": [{"name": "trace", "emptyDir": {"sizeLimit": "1Gi"}},
                    {"name": "weights", "persistentVolumeClaim": {"claimName": "weights", "readOnly": True}},
                    {"name": "creds", "secret": {"secretName": "creds", "items": [{"key": "k", "path": "k.json"}],
                                                 "defaultMode": 0o400}},
                    {"name": "token", "projected": {"sources": [{"serviceAccountToken": {
                        "audience": "storage", "expirationSeconds": 3600, "path": "token"}}]}}],
        "volumeMounts": [{"name": "trace", "mountPath": "/trace"},
                         {"name": "weights", "mountPath": "/models", "readOnly": True},
                         {"name": "creds", "mountPath": "/var/run/creds", "readOnly": True},
                         {"name": "token", "mountPath": "/tmp/token", "readOnly": True}],
        "startupTimeoutSeconds": 600,
    },
    "redis": {
        "mode": "sentinel",
        "nodeSelector": {"pool": "memory"},
        "priorityClassName": "critical",
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "redis", "effect": "NoSchedule"}],
        "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": "kubernetes.io/hostname",
             "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "redis"}}}]}},
    },
}
