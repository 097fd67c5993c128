{{/* The certificate manager's pod template, for the install's Job and the renewal CronJob alike. */}}
{{- define "wfboost.certsTemplate" -}}
{{- $image := include "wfboost.image" (dict "root" . "image" .Values.images.wfboost) -}}
{{- $external := include "wfboost.externalRedis" . -}}
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
    {{- if or .Values.sidestore.enabled (not $external) }}
    initContainers:
      {{- if .Values.sidestore.enabled }}
      - name: sidestore-certs
        image: {{ $image }}
        args: ["certs", "--service=wfboost-sidestore", "--namespace=$(POD_NAMESPACE)", "--secret=wfboost-sidestore-tls"]
        env:
          - name: POD_NAMESPACE
            valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
        resources:
          requests: {cpu: 10m, memory: 64Mi}
          limits: {memory: 128Mi}
        {{- include "wfboost.containerSecurity" . | nindent 8 }}
      {{- end }}
      - name: credentials
        image: {{ $image }}
        args:
          - credentials
          - --namespace=$(POD_NAMESPACE)
          {{- if not $external }}
          - --redis-secret=wfboost-redis-credentials
          {{- end }}
          {{- if .Values.sidestore.enabled }}
          - --sidestore-tls-secret=wfboost-sidestore-tls
          - --sidestore-clients-secret=wfboost-sidestore-clients
          - --webhook-sidestore-secret=wfboost-webhook-sidestore
          {{- end }}
        env:
          - name: POD_NAMESPACE
            valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
        resources:
          requests: {cpu: 10m, memory: 64Mi}
          limits: {memory: 128Mi}
        {{- include "wfboost.containerSecurity" . | nindent 8 }}
    {{- end }}
    containers:
      - name: certs
        image: {{ $image }}
        args: ["certs", "--service=wfboost", "--namespace=$(POD_NAMESPACE)", "--secret=wfboost-tls",
               "--webhook-config=wfboost"]
        env:
          - name: POD_NAMESPACE
            valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
        resources:
          requests: {cpu: 10m, memory: 64Mi}
          limits: {memory: 128Mi}
        {{- include "wfboost.containerSecurity" . | nindent 8 }}
{{- end -}}
