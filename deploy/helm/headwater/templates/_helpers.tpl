{{/* Chart name, truncated to the 63 characters DNS labels allow. */}}
{{- define "headwater.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name: the prefix of every resource. */}}
{{- define "headwater.fullname" -}}
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

{{- define "headwater.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every resource carries. */}}
{{- define "headwater.labels" -}}
helm.sh/chart: {{ include "headwater.chart" . }}
app.kubernetes.io/part-of: headwater
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
{{- end }}

{{/* Selector labels of one component; call with (dict "root" $ "component" "ingest-api"). */}}
{{- define "headwater.selectorLabels" -}}
app.kubernetes.io/name: {{ include "headwater.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "headwater.componentLabels" -}}
{{ include "headwater.labels" .root }}
{{ include "headwater.selectorLabels" . }}
{{- end }}

{{- define "headwater.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "headwater.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "headwater.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "headwater.configMapName" -}}
{{- printf "%s-config" (include "headwater.fullname" .) }}
{{- end }}

{{- define "headwater.secretName" -}}
{{- default (printf "%s-secrets" (include "headwater.fullname" .)) .Values.secrets.existingSecret }}
{{- end }}

{{/* The metadata database URL (Postgres via asyncpg), from `database.url` or its parts. */}}
{{- define "headwater.databaseUrl" -}}
{{- $db := .Values.database }}
{{- if $db.url }}
{{- $db.url }}
{{- else }}
{{- $auth := $db.user }}
{{- if $db.password }}
{{- $auth = printf "%s:%s" $db.user (urlquery $db.password) }}
{{- end }}
{{- printf "postgresql+asyncpg://%s@%s:%v/%s" $auth $db.host $db.port $db.name }}
{{- end }}
{{- end }}

{{/* The Redis URL, from `redis.url` or its parts. */}}
{{- define "headwater.redisUrl" -}}
{{- $r := .Values.redis }}
{{- if $r.url }}
{{- $r.url }}
{{- else if $r.password }}
{{- printf "redis://:%s@%s:%v/%v" (urlquery $r.password) $r.host $r.port $r.db }}
{{- else }}
{{- printf "redis://%s:%v/%v" $r.host $r.port $r.db }}
{{- end }}
{{- end }}

{{/* Environment of every Headwater container: the shared ConfigMap and Secret. */}}
{{- define "headwater.envFrom" -}}
- configMapRef:
    name: {{ include "headwater.configMapName" . }}
- secretRef:
    name: {{ include "headwater.secretName" . }}
{{- end }}

{{/* name: value pairs as a container env list (values quoted). */}}
{{- define "headwater.envList" -}}
{{- range $name, $value := . }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/* Pod-level fields shared by every Headwater pod; call with the root context, or with (dict "root" $ "service"
"loader") for a service's pods, which then run as that service's own ServiceAccount when it has one. */}}
{{- define "headwater.podCommon" -}}
{{- $root := . }}
{{- $service := "" }}
{{- if hasKey . "root" }}
{{- $root = .root }}
{{- $service = .service }}
{{- end }}
serviceAccountName: {{ include "headwater.podServiceAccountName" (dict "root" $root "service" $service) }}
automountServiceAccountToken: false
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- with $root.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* A service's own ServiceAccount (serviceAccount.perService.<service>, e.g. its IAM role), else the shared one. */}}
{{- define "headwater.podServiceAccountName" -}}
{{- if and .root.Values.serviceAccount.create .service (hasKey .root.Values.serviceAccount.perService .service) }}
{{- printf "%s-%s" (include "headwater.fullname" .root) .service }}
{{- else }}
{{- include "headwater.serviceAccountName" .root }}
{{- end }}
{{- end }}

{{/* Annotations that roll pods when the shared configuration changes. */}}
{{- define "headwater.podAnnotations" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- if not .Values.secrets.existingSecret }}
checksum/secret-inputs: {{ list .Values.secrets (include "headwater.databaseUrl" .) (include "headwater.redisUrl" .) | toJson | sha256sum }}
{{- end }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Prometheus scrape annotations for an API pod; call with (dict "root" $ "port" 8001). */}}
{{- define "headwater.metricsAnnotations" -}}
{{- if .root.Values.metrics.scrapeAnnotations -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end }}

{{/* Spread one component's pods over zones and nodes; call with (dict "root" $ "component" "loader-worker"). */}}
{{- define "headwater.topologySpread" -}}
{{- if .root.Values.topologySpread.enabled }}
topologySpreadConstraints:
{{- range .root.Values.topologySpread.topologyKeys }}
  - maxSkew: {{ $.root.Values.topologySpread.maxSkew }}
    topologyKey: {{ . }}
    whenUnsatisfiable: {{ $.root.Values.topologySpread.whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "headwater.selectorLabels" (dict "root" $.root "component" $.component) | nindent 8 }}
{{- end }}
{{- end }}
{{- end }}
