{{/*
The operator's RBAC rules. Keep equal to operator/rbac-rules.yaml (the operator's own statement of
what it calls); tests/unit/test_manifests_rbac.py fails when the two drift.
*/}}

{{/* Cluster-scoped reads the operator needs whatever it watches (kopf discovers resources and namespaces). */}}
{{- define "cachedmodel-operator.clusterRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
{{- end }}

{{/* What the operator does inside a watched namespace. */}}
{{- define "cachedmodel-operator.namespacedRules" -}}
- apiGroups: ["cachedmodel.dev"]
  resources: ["cachedmodels"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["cachedmodel.dev"]
  resources: ["cachedmodels/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: [""]
  resources: ["configmaps", "secrets", "services"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
