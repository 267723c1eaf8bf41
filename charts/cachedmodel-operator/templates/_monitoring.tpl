{{/*
Monitoring helpers: what selects the operator-made model Services and pods, where each object goes,
and the alert rules (one source for the PrometheusRule; tests/k8s/test_chart_monitoring.py runs
promtool's `check rules` and `test rules` on exactly what this renders).
*/}}

{{/* Labels the operator puts on every model Service and model pod it makes (builders/model.py). */}}
{{- define "cachedmodel-operator.modelSelector" -}}
app.kubernetes.io/name: model-service
app.kubernetes.io/component: model
app.kubernetes.io/managed-by: cachedmodel-operator
{{- end }}

{{/* The namespaces to look in: the watched ones, else any. */}}
{{- define "cachedmodel-operator.monitorNamespaces" -}}
{{- if .Values.watchNamespaces }}
matchNames:
  {{- range uniq .Values.watchNamespaces }}
  - {{ . }}
  {{- end }}
{{- else }}
any: true
{{- end }}
{{- end }}

{{/* Fails when a Prometheus Operator kind is asked for but the cluster does not serve it. */}}
{{- define "cachedmodel-operator.requireMonitoringKind" -}}
{{- $ := index . 0 }}{{- $kind := index . 1 }}{{- $value := index . 2 }}
{{- if not ($.Capabilities.APIVersions.Has (printf "monitoring.coreos.com/v1/%s" $kind)) }}
{{- fail (printf "%s: the cluster has no monitoring.coreos.com/v1 %s (install the Prometheus Operator CRDs first; with `helm template`, pass --api-versions monitoring.coreos.com/v1/%s)" $value $kind $kind) }}
{{- end }}
{{- end }}

{{/*
The alert rules. Series come from the model pods' /metrics (each pod also reports the shared Redis,
so Redis figures take max over pods, never sum); `namespace` is the target label the Prometheus
Operator adds.
*/}}
{{- define "cachedmodel-operator.ruleGroups" -}}
{{- $r := .Values.metrics.prometheusRule }}
- name: cachedmodel.cache
  rules:
    - alert: CachedModelHitRatioCollapsed
      expr: |
        (
          sum by (namespace, model) (rate(cachedmodel_cache_hits_total[10m]))
            / sum by (namespace, model) (rate(cachedmodel_cache_requests_total[10m]))
        )
        < {{ $r.hitRatioCollapseFactor }} * (
          sum by (namespace, model) (rate(cachedmodel_cache_hits_total[1h] offset 10m))
            / sum by (namespace, model) (rate(cachedmodel_cache_requests_total[1h] offset 10m))
        )
        and (
          sum by (namespace, model) (rate(cachedmodel_cache_hits_total[1h] offset 10m))
            / sum by (namespace, model) (rate(cachedmodel_cache_requests_total[1h] offset 10m))
        ) >= {{ $r.hitRatioBaselineMin }}
        and sum by (namespace, model) (rate(cachedmodel_cache_requests_total[10m])) > {{ $r.minRequestsPerSecond }}
      for: 10m
      labels:
        severity: warning
      annotations:
        summary: "Cache hit ratio of {{ "{{" }} $labels.model {{ "}}" }} collapsed"
        description: >-
          {{ "{{" }} $labels.namespace {{ "}}" }}/{{ "{{" }} $labels.model {{ "}}" }}: the hit ratio of the last 10 minutes
          is {{ "{{" }} $value | humanizePercentage {{ "}}" }}, less than {{ $r.hitRatioCollapseFactor }} times the hour before:
          the model takes the traffic the cache used to answer. Look for evictions (Redis full), a key change
          (model version, prefix, hashingFields), a flushed Redis, or new traffic.
    - alert: CachedModelCircuitOpen
      expr: max by (namespace, model, pod) (cachedmodel_circuit_breaker_open) == 1
      for: 2m
      labels:
        severity: warning
      annotations:
        summary: "Cache circuit breaker open for {{ "{{" }} $labels.model {{ "}}" }}"
        description: >-
          {{ "{{" }} $labels.namespace {{ "}}" }}/{{ "{{" }} $labels.pod {{ "}}" }} skips Redis after repeated failures: every
          prediction goes to the model (cachedmodel_cache_bypass_total{reason="circuit_open"}). Is Redis up
          and reachable from the pod?
    - alert: CachedModelRedisMemoryFull
      expr: |
        (
          max by (namespace, model) (cachedmodel_redis_used_memory_bytes)
            / max by (namespace, model) (cachedmodel_redis_maxmemory_bytes > 0)
        ) > {{ $r.memoryFullRatio }}
        and max by (namespace, model) (rate(cachedmodel_redis_evicted_keys_total[10m])) > 0
      for: 15m
      labels:
        severity: warning
      annotations:
        summary: "Redis of {{ "{{" }} $labels.model {{ "}}" }} is full and evicting"
        description: >-
          {{ "{{" }} $labels.namespace {{ "}}" }}/{{ "{{" }} $labels.model {{ "}}" }}: Redis uses {{ "{{" }} $value | humanizePercentage {{ "}}" }}
          of maxmemory and keys are being evicted: entries leave before they are reused. Raise
          spec.redis.maxmemory, set spec.cache.ttlSeconds, or accept the lower hit ratio.
    - alert: CachedModelCacheErrors
      expr: |
        sum by (namespace, model) (rate(cachedmodel_cache_errors_total[5m]))
          / sum by (namespace, model) (rate(cachedmodel_cache_requests_total[5m]))
        > {{ $r.errorRatio }}
      for: 10m
      labels:
        severity: warning
      annotations:
        summary: "Cache errors for {{ "{{" }} $labels.model {{ "}}" }}"
        description: >-
          {{ "{{" }} $labels.namespace {{ "}}" }}/{{ "{{" }} $labels.model {{ "}}" }}: {{ "{{" }} $value | humanizePercentage {{ "}}" }} of predictions
          meet a cache error (by kind: sum by (kind) (rate(cachedmodel_cache_errors_total[5m]))). Predictions
          still come from the model; the cache is not helping.
{{- end }}
