{{/* The release's full name: the release name, with the chart's name when it is not in it. */}}
{{- define "awe.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "awe.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "awe.labels" -}}
{{ include "awe.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "awe.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "awe.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{- define "awe.apiKeySecret" -}}
{{- .Values.apiKey.existingSecret | default (printf "%s-api-key" (include "awe.fullname" .)) -}}
{{- end -}}

{{- define "awe.environmentKeysSecret" -}}
{{- .Values.environmentKeys.existingSecret | default (printf "%s-environment-keys" (include "awe.fullname" .)) -}}
{{- end -}}

{{/* A number as the exporter writes it in a bucket's `le` label: 90 -> "90.0", 2.5 -> "2.5". */}}
{{- define "awe.le" -}}
{{- $v := float64 . -}}
{{- if eq $v (floor $v) -}}{{ printf "%.1f" $v }}{{- else -}}{{ $v }}{{- end -}}
{{- end -}}

{{/* The exporter's config: `config`, with `prometheusRule.thresholds` as its `thresholds`
     (queueBacklog -> queue_backlog): the pages say the thresholds the alerts use. */}}
{{- define "awe.config" -}}
{{- $thresholds := dict -}}
{{- range $name, $value := .Values.prometheusRule.thresholds -}}
{{- $_ := set $thresholds (snakecase $name) $value -}}
{{- end -}}
{{- toYaml (merge (dict "thresholds" $thresholds) (deepCopy (.Values.config | default dict))) -}}
{{- end -}}
