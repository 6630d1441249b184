{{/* Chart name, truncated to the 63 characters Kubernetes allows in names. */}}
{{- define "telegen.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "telegen.fullname" -}}
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

{{- define "telegen.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "telegen.selectorLabels" -}}
app.kubernetes.io/name: {{ include "telegen.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "telegen.labels" -}}
helm.sh/chart: {{ include "telegen.chart" . }}
{{ include "telegen.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: agent
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "telegen.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "telegen.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "telegen.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The agent configuration: values.config, plus API auth wired to the Secret when
auth.existingSecret is set (the token itself never lands in the ConfigMap).
*/}}
{{- define "telegen.config" -}}
{{- $cfg := deepCopy .Values.config }}
{{- if .Values.auth.existingSecret }}
{{- $st := default (dict) (get $cfg "self_telemetry") }}
{{- $auth := default (dict) (get $st "auth") }}
{{- $_ := set $auth "enabled" true }}
{{- $_ := set $auth "bearer_token" "${API_TOKEN}" }}
{{- $_ := set $st "auth" $auth }}
{{- $_ := set $cfg "self_telemetry" $st }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/* The API port, taken from config.self_telemetry.listen (":19090" form) or service.port. */}}
{{- define "telegen.apiPort" -}}
{{- $listen := "" }}
{{- with .Values.config.self_telemetry }}{{ $listen = default "" .listen }}{{ end }}
{{- if $listen }}
{{- regexFind "[0-9]+$" $listen }}
{{- else }}
{{- .Values.service.port }}
{{- end }}
{{- end }}
