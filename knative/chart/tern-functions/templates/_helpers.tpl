{{/* The rendered route table and runtime contract (files/routes.json). */}}
{{- define "tern.deploy" -}}
{{- .Files.Get "files/routes.json" -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "tern.labels" -}}
app.kubernetes.io/part-of: tern
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
tern.dev/environment: {{ .Values.environment }}
tern.dev/cluster: {{ .Values.cluster }}
tern.dev/region: {{ .Values.region }}
{{- end -}}

{{/* The Google service account a function runs as: fn-<name>@<project>.iam.gserviceaccount.com. */}}
{{- define "tern.gsa" -}}
{{- printf "fn-%s@%s.iam.gserviceaccount.com" .name .root.Values.gcp.project -}}
{{- end -}}

{{/* The image of a function pinned by digest; fails when the digest is missing or malformed. */}}
{{- define "tern.image" -}}
{{- $digest := required (printf "images.digests.%s is required (sha256:...)" .name) (index .root.Values.images.digests .name) -}}
{{- if not (regexMatch "^sha256:[0-9a-f]{64}$" $digest) -}}
{{- fail (printf "images.digests.%s must be sha256:<64 hex>, got %q" .name $digest) -}}
{{- end -}}
{{- printf "%s/%s@%s" (required "images.repository is required" .root.Values.images.repository) .name $digest -}}
{{- end -}}

{{/* The Gateway API path match for a route-table path: Exact, or PathPrefix up to the first {param}. */}}
{{- define "tern.pathMatch" -}}
{{- if contains "{" . -}}
type: PathPrefix
value: {{ index (splitList "{" .) 0 | quote }}
{{- else -}}
type: Exact
value: {{ . | quote }}
{{- end -}}
{{- end -}}

{{/* The public URL Google callers (push subscriptions, scheduler) use as the token audience. */}}
{{- define "tern.audience" -}}
{{- printf "https://%s%s" (required "hosts needs at least one host name" (first .root.Values.hosts)) .path -}}
{{- end -}}

{{/* The origins browsers reach the public functions at: every host the HTTPRoutes attach to,
over HTTPS (the web form's CSRF check accepts posts from these only). */}}
{{- define "tern.publicOrigins" -}}
{{- $out := list -}}
{{- range $h := (required "hosts needs at least one host name" .Values.hosts) -}}
{{- $out = append $out (printf "https://%s" $h) -}}
{{- end -}}
{{- join "," $out -}}
{{- end -}}

{{/* Environment every function and the migrate job share: project and database. */}}
{{- define "tern.commonEnv" -}}
- name: GOOGLE_CLOUD_PROJECT
  value: {{ .Values.gcp.project | quote }}
- name: TERN_LOG_FORMAT
  value: json
- name: TERN_LOG
  value: {{ .Values.defaults.logLevel | quote }}
{{- end -}}

{{/* A function's database settings (dict "root" $ "name" <function>): it logs in as its own
     Google service account, the IAM database user Cloud SQL names by the account's email
     without ".gserviceaccount.com", with its access token as the password (DB_AUTH=iam). */}}
{{- define "tern.dbEnv" -}}
{{- $v := .root.Values -}}
- name: DB_HOST
  value: {{ required "database.host is required" $v.database.host | quote }}
- name: DB_PORT
  value: {{ $v.database.port | quote }}
- name: DB_NAME
  value: {{ $v.database.name | quote }}
- name: DB_AUTH
  value: iam
- name: DB_USER
  value: {{ printf "fn-%s@%s.iam" .name $v.gcp.project | quote }}
- name: DB_SSLMODE
  value: {{ $v.database.sslMode | quote }}
- name: DB_SSL_ROOT_CERT
  value: /etc/tern/cloudsql/ca.pem
- name: DB_POOL_SIZE
  value: {{ $v.database.poolSize | quote }}
- name: DB_READS_PER_CONNECTION
  value: {{ $v.database.readsPerConnection | quote }}
{{- end -}}

{{/* The restricted container security context every container runs with. */}}
{{- define "tern.securityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* TERN_HTTP_ROUTES: a function's routes as METHOD /template, comma-separated. */}}
{{- define "tern.httpRoutes" -}}
{{- $out := list -}}
{{- range .routes }}{{ $out = append $out (printf "%s %s" .method .path) }}{{ end -}}
{{- join "," $out -}}
{{- end -}}

{{/* A function's min-scale: the route table's, a values override, 0 on a standby cluster. */}}
{{- define "tern.minScale" -}}
{{- $min := .fn.scale.min | int -}}
{{- if hasKey .root.Values.scale.min .fn.name }}{{ $min = index .root.Values.scale.min .fn.name | int }}{{ end -}}
{{- if .root.Values.scale.allAtZero }}{{ $min = 0 }}{{ end -}}
{{- $min -}}
{{- end -}}
