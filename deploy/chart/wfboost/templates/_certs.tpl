{{/* What the certificate manager runs, in order: the side store's certificate (unless cert-manager makes it), the
     credentials (when there is a bundled Redis or a side store), the webhook's certificate and caBundle (unless
     cert-manager does both). The last runs as the pod's container, those before it as init containers. */}}
{{- define "wfboost.certsSteps" -}}
{{- $steps := list -}}
{{- $certManager := .Values.certificates.certManager.enabled -}}
{{- if and .Values.sidestore.enabled (not $certManager) -}}{{- $steps = append $steps "sidestore-certs" -}}{{- end -}}
{{- if or .Values.sidestore.enabled (not (include "wfboost.externalRedis" .)) -}}{{- $steps = append $steps "credentials" -}}{{- end -}}
{{- if not $certManager -}}{{- $steps = append $steps "certs" -}}{{- end -}}
{{- toJson $steps -}}
{{- end -}}

{{- define "wfboost.certsArgs" -}}
{{- $root := .root -}}
{{- if eq .step "sidestore-certs" -}}
["certs", "--service=wfboost-sidestore", "--namespace=$(POD_NAMESPACE)", "--secret=wfboost-sidestore-tls"]
{{- else if eq .step "certs" -}}
["certs", "--service=wfboost", "--namespace=$(POD_NAMESPACE)", "--secret=wfboost-tls", "--webhook-config=wfboost"]
{{- else -}}
{{- $args := list "credentials" "--namespace=$(POD_NAMESPACE)" -}}
{{- if not (include "wfboost.externalRedis" $root) -}}{{- $args = append $args "--redis-secret=wfboost-redis-credentials" -}}{{- end -}}
{{- if $root.Values.sidestore.enabled -}}
{{- $args = concat $args (list "--sidestore-tls-secret=wfboost-sidestore-tls" "--sidestore-clients-secret=wfboost-sidestore-clients" "--webhook-sidestore-secret=wfboost-webhook-sidestore") -}}
{{- end -}}
{{- toJson $args -}}
{{- end -}}
{{- end -}}

{{- define "wfboost.certsContainer" -}}
- name: {{ .step }}
  image: {{ include "wfboost.image" (dict "root" .root "image" .root.Values.images.wfboost) }}
  args: {{ include "wfboost.certsArgs" . }}
  env:
    - name: POD_NAMESPACE
      valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
  resources:
    requests: {cpu: 10m, memory: 64Mi}
    limits: {memory: 128Mi}
  {{- include "wfboost.containerSecurity" .root | nindent 2 }}
{{- end -}}

{{/* The certificate manager's pod template, for the install's Job and the renewal CronJob alike. */}}
{{- define "wfboost.certsTemplate" -}}
{{- $root := . -}}
{{- $steps := include "wfboost.certsSteps" . | fromJsonArray -}}
template:
  metadata:
    labels: {{ include "wfboost.labels" "certs" }}
  spec:
    serviceAccountName: wfboost-certs
    restartPolicy: OnFailure
    {{- include "wfboost.pullSecrets" . | nindent 4 }}
    securityContext:
      runAsNonRoot: true
      runAsUser: 10001
      runAsGroup: 10001
      seccompProfile: {type: RuntimeDefault}
    {{- if gt (len $steps) 1 }}
    initContainers:
      {{- range initial $steps }}
      {{- include "wfboost.certsContainer" (dict "root" $root "step" .) | nindent 6 }}
      {{- end }}
    {{- end }}
    containers:
      {{- include "wfboost.certsContainer" (dict "root" $root "step" (last $steps)) | nindent 6 }}
{{- end -}}
