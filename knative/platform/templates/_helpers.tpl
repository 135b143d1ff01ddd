{{- define "platform.labels" -}}
app.kubernetes.io/part-of: tern
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: {{ .Values.component }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
tern.dev/environment: {{ .Values.environment }}
tern.dev/cluster: {{ .Values.cluster }}
{{- end -}}
