{{/* The labels every object carries, as deploy/base writes them. */}}
{{- define "wfboost.labels" -}}
{app.kubernetes.io/name: wfboost, app.kubernetes.io/component: {{ . }}}
{{- end -}}

{{/* An image reference; images.registry, when set, replaces the image's own registry host (or is put before a
     name that has none). Takes (dict "root" $ "image" .Values.images.X). */}}
{{- define "wfboost.image" -}}
{{- $repository := .image.repository -}}
{{- $registry := .root.Values.images.registry -}}
{{- if $registry -}}
{{- $parts := splitList "/" $repository -}}
{{- $first := first $parts -}}
{{- if or (contains "." $first) (contains ":" $first) (eq $first "localhost") -}}
{{- $repository = join "/" (rest $parts) -}}
{{- end -}}
{{- $repository = printf "%s/%s" (trimSuffix "/" $registry) $repository -}}
{{- end -}}
{{- printf "%s:%s" $repository (toString .image.tag) -}}
{{- end -}}

{{/* Pull secrets for a pod spec, indented by the caller. */}}
{{- define "wfboost.pullSecrets" -}}
{{- with .Values.images.pullSecrets }}
imagePullSecrets:
{{- range . }}
  - {name: {{ . }}}
{{- end }}
{{- end }}
{{- end -}}

{{- define "wfboost.externalRedis" -}}
{{- if .Values.redis.external.url -}}true{{- end -}}
{{- end -}}

{{/* A component's Redis credentials and URL: its own ACL user of the bundled Valkey, or the operator's Secret for
     an external Redis. Takes (dict "root" $ "user" NAME "db" N). */}}
{{- define "wfboost.redisEnv" -}}
{{- $external := .root.Values.redis.external -}}
{{- if $external.url -}}
{{- if not $external.existingSecret -}}
{{- fail "redis.external.existingSecret is required with redis.external.url (keys username and password)" -}}
{{- end -}}
{{- $parts := splitList "://" $external.url -}}
{{- $sentinel := hasSuffix "+sentinel" (first $parts) -}}
{{- $hosts := trimSuffix "/" (last $parts) -}}
{{- $db := ternary 0 .db $external.cluster -}}
{{- $path := printf "%v" $db -}}
{{- $query := ternary "?cluster=true" "" $external.cluster -}}
{{- if $sentinel -}}
{{- if $external.cluster -}}
{{- fail "redis.external.cluster and a redis+sentinel:// url exclude each other: Sentinel watches one master" -}}
{{- end -}}
{{- if not $external.sentinel.masterName -}}
{{- fail "redis.external.sentinel.masterName is required with a redis+sentinel:// url (the name the sentinels monitor)" -}}
{{- end -}}
{{- $path = printf "%s/%v" $external.sentinel.masterName .db -}}
{{- $query = ternary "?sentinel_username=$(WFBOOST_REDIS_USERNAME)&sentinel_password=$(WFBOOST_REDIS_PASSWORD)" "" $external.sentinel.authenticated -}}
{{- else if $external.sentinel.masterName -}}
{{- fail "redis.external.sentinel.masterName needs a redis+sentinel:// or rediss+sentinel:// url" -}}
{{- end }}
- name: WFBOOST_REDIS_USERNAME  # from the user-provided Secret redis.external.existingSecret
  valueFrom: {secretKeyRef: {name: {{ $external.existingSecret }}, key: username}}
- name: WFBOOST_REDIS_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ $external.existingSecret }}, key: password}}
- name: WFBOOST_REDIS_URL
  value: {{ first $parts }}://$(WFBOOST_REDIS_USERNAME):$(WFBOOST_REDIS_PASSWORD)@{{ $hosts }}/{{ $path }}{{ $query }}
{{- else }}
- name: WFBOOST_REDIS_PASSWORD  # the Redis ACL user `{{ .user }}`
  valueFrom: {secretKeyRef: {name: wfboost-redis-credentials, key: {{ .user }}}}
- name: WFBOOST_REDIS_URL
  value: redis://{{ .user }}:$(WFBOOST_REDIS_PASSWORD)@wfboost-redis:6379/{{ .db }}
{{- end }}
{{- end -}}

{{/* The hardening every wfboost container has. */}}
{{- define "wfboost.containerSecurity" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities: {drop: [ALL]}
{{- end -}}

{{/* The policy file: the commented default while nothing is switched on, else what the values say. */}}
{{- define "wfboost.policy" -}}
{{- $features := .Values.features -}}
{{- $on := false -}}
{{- range $name, $value := $features }}{{ if $value }}{{ $on = true }}{{ end }}{{ end -}}
{{- if and $features.shrinkWorkflows (not .Values.sidestore.enabled) -}}
{{- fail "features.shrinkWorkflows needs the side store: set sidestore.enabled" -}}
{{- end -}}
{{- if and $features.shrinkTaskResults (not .Values.sidestore.enabled) -}}
{{- fail "features.shrinkTaskResults needs the side store: set sidestore.enabled" -}}
{{- end -}}
{{- $replay := include "wfboost.image" (dict "root" . "image" .Values.images.replay) -}}
{{- $replayChanged := ne $replay "ghcr.io/wfboost/replay:0.1.0" -}}
{{- if and (not $on) (empty .Values.policy) (not $replayChanged) -}}
{{ .Files.Get "files/policy.yaml" }}
{{- else -}}
{{- if hasKey .Values.policy "features" -}}
{{- fail "feature switches go in the value `features`, not in policy.features" -}}
{{- end -}}
{{- $policy := deepCopy .Values.policy -}}
{{- $_ := set $policy "features" (deepCopy $features) -}}
{{- if $replayChanged -}}
{{- $memoize := get $policy "memoize" | default dict -}}
{{- $replaySettings := get $memoize "replay" | default dict -}}
{{- $_ := set $replaySettings "image" (get $replaySettings "image" | default $replay) -}}
{{- $_ := set $memoize "replay" $replaySettings -}}
{{- $_ := set $policy "memoize" $memoize -}}
{{- end -}}
# Written by the chart from its values `features` and `policy`; every field: docs/policy.md.
apiVersion: wfboost.io/v1alpha1
kind: Policy
{{ toYaml $policy }}
{{- end -}}
{{- end -}}

{{/* webhook.entries, checked: `features` (the default) or `all`. */}}
{{- define "wfboost.entries" -}}
{{- $entries := .Values.webhook.entries | default "features" -}}
{{- if not (has $entries (list "features" "all")) -}}
{{- fail (printf "webhook.entries is features or all, not %v" $entries) -}}
{{- end -}}
{{- $entries -}}
{{- end -}}

{{/* "true" when DAGs are split, as the policy decides (wfboost.policy.model Policy.splits_dags): features.splitDags
     as set, or, left null, when policy.split.argoCRDs is full. */}}
{{- define "wfboost.splitsDags" -}}
{{- $switch := .Values.features.splitDags -}}
{{- if kindIs "bool" $switch -}}
{{- if $switch }}true{{ end -}}
{{- else if eq (toString (dig "split" "argoCRDs" "" (.Values.policy | default dict))) "full" -}}
true
{{- end -}}
{{- end -}}
