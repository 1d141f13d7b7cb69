{{/*
Names fixed by the operator's contract (docs/operator.md): the sidecars dial
https://dbward-operator.<namespace>.svc:8443, the operator patches the webhook configurations by name and
takes the Lease and the certificates Secret by name. They are not values.
*/}}
{{- define "dbward.name" -}}dbward-operator{{- end }}
{{- define "dbward.certsSecret" -}}dbward-operator-certs{{- end }}
{{- define "dbward.leaderLease" -}}dbward-operator-leader{{- end }}
{{- define "dbward.podWebhook" -}}dbward-pod-injector{{- end }}
{{- define "dbward.approvalWebhook" -}}dbward-approvals{{- end }}

{{- define "dbward.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that pick the operator's pods: the Deployment's selector, the Service's, the PDB's. */}}
{{- define "dbward.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dbward.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Standard labels on every object of the chart. */}}
{{- define "dbward.labels" -}}
helm.sh/chart: {{ include "dbward.chart" . }}
{{ include "dbward.selectorLabels" . }}
app.kubernetes.io/part-of: dbward
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* An image reference from {repository, tag, digest}: a digest wins, an empty tag is the appVersion. */}}
{{- define "dbward.image" -}}
{{- $image := index . 0 -}}
{{- $root := index . 1 -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end }}

{{/*
The caBundle the operator has patched into a webhook of a live configuration, or nothing.
Argument: (list CONFIG-NAME WEBHOOK-NAME). `lookup` returns nothing under `helm template` and
--dry-run, so the rendered field is then left out.
*/}}
{{- define "dbward.liveCaBundle" -}}
{{- $config := lookup "admissionregistration.k8s.io/v1" "MutatingWebhookConfiguration" "" (index . 0) -}}
{{- include "dbward.caBundleOf" (list $config (index . 1)) -}}
{{- end }}

{{/* The caBundle of the webhook named (index . 1) in the configuration object (index . 0), or nothing. */}}
{{- define "dbward.caBundleOf" -}}
{{- $name := index . 1 -}}
{{- range (dig "webhooks" (list) (index . 0)) -}}
{{- if eq (dig "name" "" .) $name -}}
{{- dig "clientConfig" "caBundle" "" . -}}
{{- end -}}
{{- end -}}
{{- end }}
