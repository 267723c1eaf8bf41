{{/*
Names, labels and small computed values shared by every template.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "cachedmodel-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The fully qualified app name: the release name when it already contains the chart name,
else "<release>-<chart>"; truncated to 63 characters (DNS label limit).
*/}}
{{- define "cachedmodel-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "<chart>-<version>" for the helm.sh/chart label. */}}
{{- define "cachedmodel-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the operator pod: never change them after a release (selectors are immutable). */}}
{{- define "cachedmodel-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cachedmodel-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Standard labels of every resource. */}}
{{- define "cachedmodel-operator.labels" -}}
helm.sh/chart: {{ include "cachedmodel-operator.chart" . }}
{{ include "cachedmodel-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ include "cachedmodel-operator.imageTag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cachedmodel
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "cachedmodel-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cachedmodel-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image tag: image.tag, else the chart's appVersion. */}}
{{- define "cachedmodel-operator.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/* registry/repository:tag, or @digest when a digest is given. */}}
{{- define "cachedmodel-operator.image" -}}
{{- $repository := .Values.image.repository }}
{{- if .Values.image.registry }}
{{- $repository = printf "%s/%s" .Values.image.registry .Values.image.repository }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (include "cachedmodel-operator.imageTag" .) }}
{{- end }}
{{- end }}

{{/* The port of the operator's liveness endpoint (fixed by the operator: kopf --liveness). */}}
{{- define "cachedmodel-operator.healthPort" -}}
8080
{{- end }}

{{/* The watched namespaces as the operator's WATCH_NAMESPACES value ("" = cluster-wide). */}}
{{- define "cachedmodel-operator.watchNamespaces" -}}
{{- join "," (uniq .Values.watchNamespaces) }}
{{- end }}

{{/* Name of cluster-scoped objects (ClusterRole, ClusterRoleBinding): "<fullname>-<namespace>". */}}
{{- define "cachedmodel-operator.clusterScopedName" -}}
{{- printf "%s-%s" (include "cachedmodel-operator.fullname" .) .Release.Namespace | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Checks across values that a JSON schema cannot express; each failure names the value to fix. */}}
{{- define "cachedmodel-operator.validateValues" -}}
{{- if has (lower (include "cachedmodel-operator.imageTag" .)) (list "latest" "main" "master") }}
{{- fail (printf "image.tag: pin a released version (e.g. %q), not %q: a moving tag makes upgrades and rollbacks unpredictable" .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- if and .Values.sample.enabled .Values.watchNamespaces (not (has .Release.Namespace .Values.watchNamespaces)) }}
{{- fail (printf "sample.enabled: the sample CachedModel goes into the release namespace %q, which watchNamespaces %v does not include: add it or install the sample yourself" .Release.Namespace .Values.watchNamespaces) }}
{{- end }}
{{- if and (not .Values.serviceAccount.create) (not .Values.serviceAccount.name) }}
{{- fail "serviceAccount.name: required when serviceAccount.create is false (the operator must not run as the namespace's default ServiceAccount)" }}
{{- end }}
{{- end }}
