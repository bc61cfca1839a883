{{/*
Names, labels and the pieces every pod shares. The worker templates (workers-*.yaml) range over
"sa-engine.workerTargets": one entry per enabled pool and per build (the current one plus
workerVersioning.drainingBuilds), each with its Deployment name, task queue, build and image.
*/}}

{{- define "sa-engine.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sa-engine.fullname" -}}
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

{{- define "sa-engine.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "sa-engine.labels" -}}
helm.sh/chart: {{ include "sa-engine.chart" . | quote }}
app.kubernetes.io/name: {{ include "sa-engine.name" . | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/part-of: sa-engine
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of one component's resources: the above plus its selector labels; args as below. */}}
{{- define "sa-engine.componentLabels" -}}
helm.sh/chart: {{ include "sa-engine.chart" .root | quote }}
{{ include "sa-engine.selectorLabels" . }}
app.kubernetes.io/part-of: sa-engine
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component; args: (dict "root" $ "component" "orchestration" "build" "v1-2") */}}
{{- define "sa-engine.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sa-engine.name" .root | quote }}
app.kubernetes.io/instance: {{ .root.Release.Name | quote }}
app.kubernetes.io/component: {{ .component }}
{{- if .build }}
sa-engine/build: {{ .build | quote }}
{{- end }}
{{- end }}

{{/* The current build id: workerVersioning.buildId, default the chart's appVersion. */}}
{{- define "sa-engine.buildId" -}}
{{- .Values.workerVersioning.buildId | default .Chart.AppVersion | toString }}
{{- end }}

{{/* The Temporal Worker Deployment name: workerVersioning.deploymentName, default the fullname. */}}
{{- define "sa-engine.temporalDeploymentName" -}}
{{- .Values.workerVersioning.deploymentName | default (include "sa-engine.fullname" .) }}
{{- end }}

{{/* A build id as a DNS-label fragment and label value: lowercase, [a-z0-9-], at most 20 chars. */}}
{{- define "sa-engine.buildSuffix" -}}
{{- $suffix := regexReplaceAll "[^a-z0-9-]+" (. | toString | lower) "-" | trimAll "-" | trunc 20 | trimAll "-" }}
{{- if not $suffix }}
{{- fail (printf "build id %q has no letters or digits to name a Deployment after" (toString .)) }}
{{- end }}
{{- $suffix }}
{{- end }}

{{/* A value as a label value (at most 63 of [A-Za-z0-9._-], alphanumeric at both ends). */}}
{{- define "sa-engine.labelValue" -}}
{{- $value := regexReplaceAll "[^A-Za-z0-9._-]+" (toString .) "_" | trunc 63 }}
{{- regexReplaceAll "^[^A-Za-z0-9]+|[^A-Za-z0-9]+$" $value "" }}
{{- end }}

{{/* image reference; args: (dict "image" .Values.images.worker "tag" "<default tag>") */}}
{{- define "sa-engine.image" -}}
{{- $tag := .image.tag | default .tag | toString }}
{{- if not (regexMatch "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$" $tag) }}
{{- fail (printf "image %s: %q is not a valid image tag (letters, digits, _ . -); a build id that is not one needs images.*.tag" .image.repository $tag) }}
{{- end }}
{{- if .image.digest }}
{{- printf "%s:%s@%s" .image.repository $tag .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}
{{- end }}

{{- define "sa-engine.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- .Values.serviceAccount.name | default (include "sa-engine.fullname" .) }}
{{- else }}
{{- .Values.serviceAccount.name | default "default" }}
{{- end }}
{{- end }}

{{/*
The builds that get worker Deployments, as YAML {builds: [{buildId, suffix, current, images}]}:
the current build first, then workerVersioning.drainingBuilds. Without versioning there is one
build and no suffix (the Deployments keep their names across upgrades and roll in place).
*/}}
{{- define "sa-engine.builds" -}}
{{- $v := .Values.workerVersioning }}
{{- $builds := list }}
{{- $current := include "sa-engine.buildId" . }}
{{- if $v.enabled }}
{{- $builds = append $builds (dict "buildId" $current "suffix" (include "sa-engine.buildSuffix" $current) "current" true "images" .Values.images) }}
{{- range $v.drainingBuilds }}
{{- $entry := kindIs "map" . | ternary . (dict "buildId" .) }}
{{- if not $entry.buildId }}
{{- fail "workerVersioning.drainingBuilds: each entry is a build id or {buildId, images}" }}
{{- end }}
{{- /* the current images' repositories and pull policies, with this build's tags (default its id) */}}
{{- $images := dict }}
{{- range $key, $image := $.Values.images }}
{{- $own := get ($entry.images | default dict) $key | default dict }}
{{- $_ := set $images $key (merge (dict "tag" ($own.tag | default "") "digest" ($own.digest | default "")) (omit $own "tag" "digest") (omit $image "tag" "digest")) }}
{{- end }}
{{- $builds = append $builds (dict "buildId" (toString $entry.buildId) "suffix" (include "sa-engine.buildSuffix" $entry.buildId) "current" false "images" $images) }}
{{- end }}
{{- else }}
{{- if $v.drainingBuilds }}
{{- fail "workerVersioning.drainingBuilds needs workerVersioning.enabled: true (without versioning a new build replaces the old pods in place)" }}
{{- end }}
{{- $builds = append $builds (dict "buildId" $current "suffix" "" "current" true "images" .Values.images) }}
{{- end }}
{{- $seen := dict }}
{{- range $builds }}
{{- if hasKey $seen .suffix }}
{{- fail (printf "workerVersioning: build ids %q and %q give the same Deployment suffix %q; pick distinct ids" (get $seen .suffix) .buildId .suffix) }}
{{- end }}
{{- $_ := set $seen .suffix .buildId }}
{{- end }}
{{- toYaml (dict "builds" $builds) }}
{{- end }}

{{/*
The three pools: task queue, image key (values.images.*), whether it has a GPU. The inference pool
on a CPU cluster (gpu.enabled false) runs the plain worker image.
*/}}
{{- define "sa-engine.pools" -}}
{{- $w := .Values.workers }}
pools:
  - key: orchestration
    component: orchestration
    queue: sae-orchestration
    image: worker
    gpu: false
  - key: inference
    component: gpu-inference
    queue: sae-gpu-inference
    image: {{ $w.inference.gpu.enabled | ternary "workerCuda" "worker" }}
    gpu: {{ $w.inference.gpu.enabled }}
  - key: training
    component: gpu-training
    queue: sae-gpu-training
    image: trainer
    gpu: {{ $w.training.gpu.enabled }}
{{- end }}

{{/*
Every worker Deployment to render, as YAML {targets: [...]}: per enabled pool and per build,
{key, component, queue, gpu, name, buildId, suffix, current, image, imagePullPolicy}.
*/}}
{{- define "sa-engine.workerTargets" -}}
{{- $root := . }}
{{- $targets := list }}
{{- range (include "sa-engine.builds" . | fromYaml).builds }}
{{- $build := . }}
{{- range (include "sa-engine.pools" $root | fromYaml).pools }}
{{- if (get $root.Values.workers .key).enabled }}
{{- $base := printf "%s-%s" (include "sa-engine.fullname" $root) .component }}
{{- $name := $base }}
{{- if $build.suffix }}
{{- $name = printf "%s-%s" $base $build.suffix | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- $img := get $build.images .image }}
{{- $image := include "sa-engine.image" (dict "image" $img "tag" $build.buildId) }}
{{- $targets = append $targets (merge (dict "name" $name "buildId" $build.buildId "suffix" $build.suffix "current" $build.current "image" $image "imagePullPolicy" $img.pullPolicy) .) }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml (dict "targets" $targets) }}
{{- end }}

{{/* Does KEDA's scaler need a TriggerAuthentication (API key and/or client certificate)? */}}
{{- define "sa-engine.temporalAuthNeeded" -}}
{{- if or .Values.temporal.apiKey.secretName .Values.temporal.tls.secretName }}true{{ end }}
{{- end }}

{{/* Environment every container gets: Temporal, storage, HOME on the writable /tmp. */}}
{{- define "sa-engine.commonEnv" -}}
{{- $t := .Values.temporal -}}
- name: TEMPORAL_ADDRESS
  value: {{ $t.address | quote }}
- name: TEMPORAL_NAMESPACE
  value: {{ $t.namespace | quote }}
{{- if $t.tls.enabled }}
- name: TEMPORAL_TLS
  value: "true"
{{- end }}
{{- if $t.apiKey.secretName }}
- name: TEMPORAL_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $t.apiKey.secretName }}
      key: {{ $t.apiKey.key }}
{{- end }}
{{- if $t.tls.secretName }}
- name: TEMPORAL_TLS_CLIENT_CERT_PATH
  value: /etc/temporal-tls/{{ $t.tls.certKey }}
- name: TEMPORAL_TLS_CLIENT_KEY_PATH
  value: /etc/temporal-tls/{{ $t.tls.keyKey }}
{{- if $t.tls.caKey }}
- name: TEMPORAL_TLS_SERVER_CA_CERT_PATH
  value: /etc/temporal-tls/{{ $t.tls.caKey }}
{{- end }}
{{- end }}
{{- if $t.tls.serverName }}
- name: TEMPORAL_TLS_SERVER_NAME
  value: {{ $t.tls.serverName | quote }}
{{- end }}
{{- if .Values.s3.endpoint }}
- name: SAE_S3_ENDPOINT
  value: {{ .Values.s3.endpoint | quote }}
{{- end }}
- name: AWS_REGION
  value: {{ .Values.s3.region | quote }}
{{- with .Values.s3.credentialsSecret }}
{{- if .name }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .accessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .secretAccessKeyKey }}
{{- end }}
{{- end }}
- name: HOME
  value: /tmp
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Volumes every pod gets: /tmp, and the Temporal client certificate when mTLS is on. */}}
{{- define "sa-engine.commonVolumes" -}}
- name: tmp
  {{- if .sizeLimit }}
  emptyDir:
    sizeLimit: {{ .sizeLimit }}
  {{- else }}
  emptyDir: {}
  {{- end }}
{{- with .root.Values.temporal.tls.secretName }}
- name: temporal-tls
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
{{- end }}

{{- define "sa-engine.commonVolumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.temporal.tls.secretName }}
- name: temporal-tls
  mountPath: /etc/temporal-tls
  readOnly: true
{{- end }}
{{- end }}

{{/* Liveness and readiness on the health port; args: (dict "root" $ "startup" <startupProbe values or nil>) */}}
{{- define "sa-engine.probes" -}}
{{- with .startup -}}
startupProbe:
  httpGet:
    path: /healthz
    port: health
  periodSeconds: {{ .periodSeconds }}
  failureThreshold: {{ .failureThreshold }}
{{- end }}
livenessProbe:
  httpGet:
    path: /healthz
    port: health
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: health
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 2
{{- end }}

{{/* A PodDisruptionBudget's policy from a pool's `pdb` values: minAvailable wins when set. */}}
{{- define "sa-engine.pdbPolicy" -}}
{{- if hasKey . "minAvailable" -}}
minAvailable: {{ .minAvailable }}
{{- else }}
maxUnavailable: {{ .maxUnavailable | default 1 }}
{{- end }}
{{- end }}
