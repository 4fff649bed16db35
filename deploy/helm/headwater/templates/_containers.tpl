{{/* The API container of one service; call with (dict "root" $ "name" "ingest" "svc" $svc). */}}
{{- define "headwater.apiContainer" -}}
{{- $root := .root }}
{{- $probes := $root.Values.probes.api -}}
- name: api
  image: {{ include "headwater.image" $root }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  command:
    - uvicorn
    - --factory
    - services.{{ .name }}.app:create_app
    - --host
    - 0.0.0.0
    - --port
    - {{ .svc.port | quote }}
    - --no-access-log
    - --timeout-graceful-shutdown
    - "20"
  ports:
    - name: http
      containerPort: {{ .svc.port }}
      protocol: TCP
  envFrom:
    {{- include "headwater.envFrom" $root | nindent 4 }}
  {{- if or .svc.api.env (eq .name "poller") }}
  env:
    {{- include "headwater.pollerIngestKeyEnv" (dict "root" $root "name" .name) | nindent 4 }}
    {{- with .svc.api.env }}
    {{- include "headwater.envList" . | nindent 4 }}
    {{- end }}
  {{- end }}
  startupProbe:
    httpGet:
      path: /healthz
      port: http
    {{- toYaml $probes.startup | nindent 4 }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: http
    {{- toYaml $probes.liveness | nindent 4 }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: http
    {{- toYaml $probes.readiness | nindent 4 }}
  resources:
    {{- toYaml .svc.api.resources | nindent 4 }}
  securityContext:
    {{- toYaml $root.Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: data
      mountPath: {{ $root.Values.config.dataDir }}
    - name: tmp
      mountPath: /tmp
{{- end }}

{{/* The arq worker container of one service; call with (dict "root" $ "name" "loader" "svc" $svc). */}}
{{- define "headwater.workerContainer" -}}
{{- $root := .root }}
{{- $settings := printf "services.%s.worker.WorkerSettings" .name -}}
- name: worker
  image: {{ include "headwater.image" $root }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  # One replica among many: its own health key, and the jobs in hand finish on SIGTERM (shared.worker_process).
  command: ["python", "-m", "shared.worker_process", "run", {{ $settings | quote }}]
  envFrom:
    {{- include "headwater.envFrom" $root | nindent 4 }}
  env:
    # Jobs in hand get this long after SIGTERM before arq cancels them; below the pod's grace period.
    - name: HEADWATER_WORKER_SHUTDOWN_WAIT_S
      value: {{ sub (include "headwater.workerGracePeriod" $root) 15 | quote }}
    {{- include "headwater.pollerIngestKeyEnv" (dict "root" $root "name" .name) | nindent 4 }}
    {{- with .svc.worker.env }}
    {{- include "headwater.envList" . | nindent 4 }}
    {{- end }}
  # Each replica refreshes its own Redis key (<queue>:health-check:<pod name>) while its loop runs; the probe
  # reads this pod's key only, so another replica stopping never fails it (plain `arq --check` shares one key).
  livenessProbe:
    exec:
      command: ["python", "-m", "shared.worker_process", "check", {{ $settings | quote }}]
    {{- toYaml $root.Values.probes.worker.liveness | nindent 4 }}
  resources:
    {{- toYaml .svc.worker.resources | nindent 4 }}
  securityContext:
    {{- toYaml $root.Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: data
      mountPath: {{ $root.Values.config.dataDir }}
    - name: tmp
      mountPath: /tmp
{{- end }}

{{/* A one-shot `headwater <step>` hook Job; call with (dict "root" $ "step" "migrate" "weight" "0"). */}}
{{- define "headwater.hookJob" -}}
{{- $root := .root }}
{{- $cfg := index $root.Values .step -}}
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ include "headwater.fullname" $root }}-{{ .step }}
  labels:
    {{- include "headwater.componentLabels" (dict "root" $root "component" .step) | nindent 4 }}
  annotations:
    # post-install: the ConfigMap, Secret and ServiceAccount exist (ordinary resources); pre-upgrade: before the
    # new version's replicas roll (reading the Secret and ConfigMap as the release last left them).
    helm.sh/hook: post-install,pre-upgrade
    helm.sh/hook-weight: {{ .weight | quote }}
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
spec:
  backoffLimit: {{ $cfg.backoffLimit }}
  activeDeadlineSeconds: {{ $cfg.activeDeadlineSeconds }}
  template:
    metadata:
      labels:
        {{- include "headwater.componentLabels" (dict "root" $root "component" .step) | nindent 8 }}
    spec:
      restartPolicy: Never
      {{- include "headwater.podCommon" $root | nindent 6 }}
      containers:
        - name: {{ .step }}
          image: {{ include "headwater.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command: ["headwater", {{ .step | quote }}]
          envFrom:
            {{- include "headwater.envFrom" $root | nindent 12 }}
          resources:
            {{- toYaml $cfg.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          volumeMounts:
            - name: data
              mountPath: {{ $root.Values.config.dataDir }}
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: data
          emptyDir: {}
        - name: tmp
          emptyDir: {}
{{- end }}

{{/* Grace period of a worker pod: long enough for the jobs in hand to finish after SIGTERM. */}}
{{- define "headwater.workerGracePeriod" -}}
{{- max 120 .Values.terminationGracePeriodSeconds -}}
{{- end }}

{{/*
The poller's ingest key under the name the poller reads, for poller containers; call with (dict "root" $ "name" .name).
Not optional: without it meter reads would silently never reach ingest, so the pod waits for the Secret key instead.
*/}}
{{- define "headwater.pollerIngestKeyEnv" -}}
{{- if eq .name "poller" -}}
- name: HEADWATER_INGEST_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "headwater.secretName" .root }}
      key: HEADWATER_POLLER_INGEST_API_KEY
{{- end }}
{{- end }}
