{{/* The chart's name, or nameOverride. */}}
{{- define "awe.name" -}}
{{- .Values.nameOverride | default .Chart.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name: fullnameOverride, else the release name, with the chart's name when
     it is not in it. The objects are named after it, and the Service, so the scrape job too. */}}
{{- define "awe.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "awe.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "awe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "awe.name" . }}
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

{{/* The exporter's address for people (externalURL, no trailing /), or "" for relative links. */}}
{{- define "awe.externalURL" -}}
{{- .Values.externalURL | trimSuffix "/" -}}
{{- end -}}

{{/* Where the alerts' runbook_url points: prometheusRule.runbookURL (a published copy), else the
     exporter's own /docs/runbooks under externalURL, else the repository's docs/runbooks.md. */}}
{{- define "awe.runbookURL" -}}
{{- if .Values.prometheusRule.runbookURL -}}
{{- .Values.prometheusRule.runbookURL -}}
{{- else if .Values.externalURL -}}
{{- include "awe.externalURL" . }}/docs/runbooks
{{- else -}}
docs/runbooks.md
{{- end -}}
{{- end -}}

{{/* The exporter alerts' job matcher: the rules file's `.*anthropic-work.*` while the full name
     (the Service's, so the job's) has it, else that name exactly. */}}
{{- define "awe.jobMatcher" -}}
{{- $name := include "awe.fullname" . -}}
{{- if contains "anthropic-work" $name -}}
.*anthropic-work.*
{{- else -}}
{{- regexQuoteMeta $name -}}
{{- end -}}
{{- end -}}
