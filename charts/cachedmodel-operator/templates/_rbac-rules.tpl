{{/*
The operator's RBAC rules, split by scope. They must equal operator/rbac-rules.yaml (the operator's
own statement of what it calls, with the reason for each rule); tests/unit/test_manifests_content.py
and tests/k8s/test_chart_render.py fail when the two drift.
*/}}

{{/* Rules on cluster-scoped resources: always in a ClusterRole, whatever the operator watches. */}}
{{- define "cachedmodel-operator.clusterRules" -}}
# kopf scans CRDs to resolve the watched resources
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
# kopf observes namespaces (also when given explicit names) to know which ones exist
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}

{{/* Rules inside a watched namespace: a Role there, or part of the ClusterRole when watching all. */}}
{{- define "cachedmodel-operator.namespacedRules" -}}
# the CachedModels themselves: watched, never modified (no finalizers, no annotations)
- apiGroups: ["cachedmodel.dev"]
  resources: ["cachedmodels"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["cachedmodel.dev"]
  resources: ["cachedmodels/status"]
  verbs: ["get", "patch", "update"]
# Warning events on CachedModels
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
# children: watched for drift, server-side applied, deleted when the spec no longer wants them
- apiGroups: [""]
  resources: ["configmaps", "services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# the model's HorizontalPodAutoscaler (spec.model.autoscaling), deleted when autoscaling is switched off
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# pods of the model Deployment and the Redis StatefulSet: read only, to tell in status why they are not ready
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# the Redis password Secret: read by name, created once, deleted on prune; never listed or watched
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "delete"]
{{- end }}
