{{/* Names */}}
{{- define "coinline.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "coinline.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "coinline.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "coinline.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: coinline
{{- end }}

{{- define "coinline.selectorLabels" -}}
app.kubernetes.io/name: {{ include "coinline.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "coinline.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "coinline.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image, pinned by tag (and digest when given). */}}
{{- define "coinline.image" -}}
{{- $repo := required "image.repository is required" .repository -}}
{{- $tag := required "image.tag is required (pin a version; never latest)" .tag | toString -}}
{{- if eq $tag "latest" }}{{ fail "image.tag must pin a version, not latest" }}{{ end -}}
{{- if .digest }}{{ printf "%s:%s@%s" $repo $tag .digest }}{{ else }}{{ printf "%s:%s" $repo $tag }}{{ end -}}
{{- end }}

{{/* coinline's own image: image.tag, or the chart's appVersion when it is blank (the release's version). */}}
{{- define "coinline.appImage" -}}
{{- include "coinline.image" (merge (dict "tag" (default .Chart.AppVersion .Values.image.tag)) .Values.image) -}}
{{- end }}

{{- define "coinline.rayImage" -}}
{{- $img := dict "repository" (default .Values.image.repository .Values.ray.image.repository) "tag" (default (default .Chart.AppVersion .Values.image.tag) .Values.ray.image.tag) "digest" (ternary .Values.image.digest "" (and (empty .Values.ray.image.repository) (empty .Values.ray.image.tag))) -}}
{{- include "coinline.image" $img -}}
{{- end }}

{{/* The Secret the secret variables come from ("" when none). */}}
{{- define "coinline.secretName" -}}
{{- if and .Values.secret.create .Values.secret.existingSecret }}
{{- fail "secret.create and secret.existingSecret are mutually exclusive" }}
{{- else if .Values.secret.create }}
{{- printf "%s-secrets" (include "coinline.fullname" .) }}
{{- else }}
{{- .Values.secret.existingSecret }}
{{- end }}
{{- end }}

{{- define "coinline.rayClusterName" -}}
{{- printf "%s-ray" (include "coinline.fullname" .) }}
{{- end }}

{{/* KubeRay names the head service <cluster>-head-svc. */}}
{{- define "coinline.rayAddress" -}}
{{- printf "ray://%s-head-svc.%s.svc:%d" (include "coinline.rayClusterName" .) .Release.Namespace (int .Values.ray.clientPort) }}
{{- end }}

{{/* MinIO: in the chart (minio.enabled) or running elsewhere (minio.external); never both. */}}
{{- define "coinline.minioName" -}}
{{- printf "%s-minio" (include "coinline.fullname" .) }}
{{- end }}

{{- define "coinline.minioSelectorLabels" -}}
{{ include "coinline.selectorLabels" . }}
app.kubernetes.io/component: minio
{{- end }}

{{/* The S3 endpoint of the MinIO the chart knows about ("" when none). */}}
{{- define "coinline.minioEndpoint" -}}
{{- $m := .Values.minio -}}
{{- if and $m.enabled $m.external }}
{{- fail "minio.enabled (MinIO in this chart) and minio.external (MinIO elsewhere) are mutually exclusive" }}
{{- else if $m.enabled }}
{{- printf "http://%s.%s.svc:%d" (include "coinline.minioName" .) .Release.Namespace (int $m.port) }}
{{- else if $m.external }}
{{- default (printf "http://%s.%s.svc:%d" $m.serviceName .Release.Namespace (int $m.port)) $m.endpoint }}
{{- end }}
{{- end }}

{{/* OBJECT_STORE_ENDPOINT_URL as coinline sees it: config wins, then the MinIO endpoint, else "" (AWS S3). */}}
{{- define "coinline.objectStoreEndpoint" -}}
{{- default (include "coinline.minioEndpoint" .) (toString .Values.config.OBJECT_STORE_ENDPOINT_URL) }}
{{- end }}

{{/* The bucket of config.OBJECT_STORE_URL (s3://BUCKET/prefix); the chart's MinIO needs one. */}}
{{- define "coinline.lakeBucket" -}}
{{- $url := toString .Values.config.OBJECT_STORE_URL -}}
{{- if not (regexMatch "^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$" $url) }}
{{- fail (printf "minio.enabled needs config.OBJECT_STORE_URL of the form s3://BUCKET/prefix with a valid bucket name (3-63 of a-z 0-9 . -), got %q" $url) }}
{{- end }}
{{- regexReplaceAll "^s3://([^/]+).*$" $url "${1}" }}
{{- end }}

{{/* The Secret holding MinIO's root user and password: minio.auth.existingSecret, else the coinline
Secret (keys OBJECT_STORE_ACCESS_KEY_ID / OBJECT_STORE_SECRET_ACCESS_KEY by default, so one Secret
serves MinIO and coinline). Fails when there is none. */}}
{{- define "coinline.minioSecretName" -}}
{{- $a := .Values.minio.auth -}}
{{- $name := default (include "coinline.secretName" .) $a.existingSecret -}}
{{- if not $name }}
{{- fail "minio.enabled needs credentials: set minio.auth.existingSecret (a Secret with the keys minio.auth.userKey and minio.auth.passwordKey), or secret.existingSecret holding OBJECT_STORE_ACCESS_KEY_ID and OBJECT_STORE_SECRET_ACCESS_KEY" }}
{{- end }}
{{- if and (not $a.existingSecret) .Values.secret.create }}
{{- range (list $a.userKey $a.passwordKey) }}
{{- if not (hasKey $.Values.secret.values .) }}
{{- fail (printf "minio.enabled with secret.create: secret.values needs %s (MinIO's root credentials)" .) }}
{{- end }}
{{- end }}
{{- end }}
{{- $name }}
{{- end }}

{{/* MinIO's credentials as files (not environment variables): a volume and where it is mounted. */}}
{{- define "coinline.minioCredentialsVolume" -}}
name: minio-credentials
secret:
  secretName: {{ include "coinline.minioSecretName" . }}
  defaultMode: 288    # 0440: read for the owner and the pod's fsGroup
  items:
    - {key: {{ .Values.minio.auth.userKey }}, path: root-user}
    - {key: {{ .Values.minio.auth.passwordKey }}, path: root-password}
{{- end }}

{{- define "coinline.minioCredentialsDir" -}}
/etc/minio/credentials
{{- end }}

{{/* Egress rule to the object store's MinIO (in the chart or external), for the NetworkPolicies. */}}
{{- define "coinline.minioEgress" -}}
{{- $m := .Values.minio -}}
{{- if $m.enabled }}
- to:
    - podSelector:
        matchLabels:
          {{- include "coinline.minioSelectorLabels" . | nindent 10 }}
  ports:
    - {protocol: TCP, port: {{ $m.port }}}
{{- else if $m.external }}
- to:
    - podSelector:
        {{- toYaml $m.podSelector | nindent 8 }}
      {{- with $m.namespaceSelector }}
      namespaceSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
  ports:
    - {protocol: TCP, port: {{ $m.port }}}
{{- end }}
{{- end }}

{{/* The recurring work: values key under `schedules` -> object name suffix and component label. Names
stay short: a CronJob (and a CronWorkflow's workflows) add 11 characters to a name of at most 52. */}}
{{- define "coinline.scheduleParts" -}}
sync: {suffix: sync, component: sync}
universeRefresh: {suffix: universe, component: universe-refresh}
retrain: {suffix: retrain, component: retrain}
driftCheck: {suffix: drift-check, component: drift-check}
run: {suffix: run, component: run}
maintain: {suffix: maintain, component: maintain}
{{- end }}

{{/* Every component label of a coinline (not Ray, not MinIO) pod, for the NetworkPolicies. */}}
{{- define "coinline.appComponents" -}}
{{- $out := list "sync-follow" "kfp-upload" "minio-bucket" "helm-test" -}}
{{- range $key, $p := include "coinline.scheduleParts" . | fromYaml }}
{{- $out = append $out $p.component }}
{{- end }}
{{- toJson (sortAlpha $out) }}
{{- end }}

{{/* The cron expression of one schedule: universe refresh follows config.UNIVERSE_REFRESH_CRON (one
setting for coinline and the cluster); the others their own `schedule`. Five fields or @hourly-style. */}}
{{- define "coinline.cronOf" -}}
{{- $cron := ternary (toString .root.Values.config.UNIVERSE_REFRESH_CRON) (toString .c.schedule) (eq .key "universeRefresh") -}}
{{- $from := ternary "config.UNIVERSE_REFRESH_CRON" (printf "schedules.%s.schedule" .key) (eq .key "universeRefresh") -}}
{{- if not (regexMatch "^(@(yearly|annually|monthly|weekly|daily|hourly)|[^ ]+( +[^ ]+){4})$" (trim $cron)) }}
{{- fail (printf "%s must be a 5-field cron (minute hour day-of-month month day-of-week) or @hourly-style, got %q" $from $cron) }}
{{- end }}
{{- trim $cron }}
{{- end }}

{{/* Does any schedule render (as a CronJob or a CronWorkflow)? "true" or "". */}}
{{- define "coinline.anySchedule" -}}
{{- range $key, $_ := include "coinline.scheduleParts" . | fromYaml }}
{{- if (index $.Values.schedules $key).enabled }}true{{ end }}
{{- end }}
{{- end }}

{{/* Environment of every coinline container: secrets by key (optional), then fixed and extra env.
Call with the root context, or (dict "root" $ "noSecretEnv" true) for a container that needs no secret. */}}
{{- define "coinline.env" -}}
{{- $root := . -}}
{{- $noSecret := false -}}
{{- if hasKey . "root" }}{{ $root = .root }}{{ $noSecret = .noSecretEnv }}{{ end -}}
{{- with $root }}
{{- $secret := include "coinline.secretName" . -}}
{{- if and $secret (not $noSecret) }}
{{- range .Values.secret.keys }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ . }}
      optional: true
{{- end }}
{{- end }}
- name: HOME
  value: /tmp
- name: PYTHONUNBUFFERED
  value: "1"
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}
{{- end }}

{{/* Pod-level placement and security shared by every coinline pod (Kubernetes pod spec or Argo
workflow spec: both spell these fields the same). */}}
{{- define "coinline.podPlacement" -}}
{{- $v := .Values -}}
securityContext:
  {{- toYaml $v.podSecurityContext | nindent 2 }}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
The coinline container (without its name): image, args, environment, resources, hardening, scratch mounts.
Call with (dict "root" $ "args" list "resources" map "shm" "2Gi" "command" list "extraEnv" list
"extraMounts" list "noSecretEnv" bool).
*/}}
{{- define "coinline.container" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
image: {{ include "coinline.appImage" $root }}
imagePullPolicy: {{ $v.image.pullPolicy }}
{{- with .command }}
command:
  {{- toYaml . | nindent 2 }}
{{- end }}
args:
  {{- toYaml .args | nindent 2 }}
workingDir: /var/lib/coinline
envFrom:
  - configMapRef:
      name: {{ include "coinline.fullname" $root }}-config
env:
  {{- include "coinline.env" (dict "root" $root "noSecretEnv" .noSecretEnv) | trim | nindent 2 }}
  {{- if $v.ray.enabled }}
  - name: RAY_ADDRESS
    value: {{ include "coinline.rayAddress" $root | quote }}
  {{- with $v.ray.env }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
  {{- end }}
  {{- with .extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
resources:
  {{- toYaml .resources | nindent 2 }}
securityContext:
  {{- toYaml $v.securityContext | nindent 2 }}
volumeMounts:
  - name: tmp
    mountPath: /tmp
  - name: work
    mountPath: /var/lib/coinline
  {{- if $v.scratch.universeClaim }}
  - name: universe
    mountPath: /var/lib/coinline/universe
  {{- end }}
  {{- if .shm }}
  - name: dshm
    mountPath: /dev/shm
  {{- end }}
  {{- with .extraMounts }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/* The volumes behind coinline.container's mounts (same dict). */}}
{{- define "coinline.volumes" -}}
{{- $v := .root.Values -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ $v.scratch.tmpSizeLimit }}
- name: work
  emptyDir:
    sizeLimit: {{ $v.scratch.workSizeLimit }}
{{- if $v.scratch.universeClaim }}
- name: universe
  persistentVolumeClaim:
    claimName: {{ $v.scratch.universeClaim }}
{{- end }}
{{- if .shm }}
- name: dshm
  emptyDir:
    medium: Memory
    sizeLimit: {{ .shm }}
{{- end }}
{{- with .extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The pod spec shared by the CronJobs, the follower and the hook Jobs: coinline.container and
coinline.volumes plus (dict ... "restartPolicy" "Never" "extraVolumes" list).
*/}}
{{- define "coinline.podSpec" -}}
{{- $root := .root -}}
serviceAccountName: {{ include "coinline.serviceAccountName" $root }}
automountServiceAccountToken: false
enableServiceLinks: false
restartPolicy: {{ .restartPolicy }}
{{ include "coinline.podPlacement" $root }}
containers:
  - name: coinline
    {{- include "coinline.container" . | nindent 4 }}
volumes:
  {{- include "coinline.volumes" . | nindent 2 }}
{{- end }}

{{/* One container template of a CronWorkflow: (dict "root" $ "name" "coinline" "component" "sync"
"retries" 2 "ctx" <coinline.container dict>). */}}
{{- define "coinline.workflowContainerTemplate" -}}
- name: {{ .name }}
  metadata:
    labels:
      {{- include "coinline.podLabels" (dict "root" .root "component" .component) | nindent 6 }}
    {{- with .root.Values.podAnnotations }}
    annotations:
      {{- toYaml . | nindent 6 }}
    {{- end }}
  # exit 2 = configuration error, 3 = a series lease held by another writer: retrying now
  # cannot help, so only other failures (crashes, evictions, provider outages) are retried
  retryStrategy:
    limit: {{ .retries }}
    retryPolicy: Always
    expression: 'asInt(lastRetry.exitCode) != 2 && asInt(lastRetry.exitCode) != 3'
    backoff:
      duration: {{ .root.Values.argo.retryBackoff.duration | quote }}
      factor: {{ .root.Values.argo.retryBackoff.factor }}
  # logs stay with the pod: no dependency on the cluster's artifact repository
  archiveLocation:
    archiveLogs: false
  container:
    {{- include "coinline.container" .ctx | nindent 4 }}
{{- end }}

{{/* Pod labels of one workload. */}}
{{- define "coinline.podLabels" -}}
{{ include "coinline.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: coinline
{{- with .root.Values.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Job failure policy that follows the CLI's exit codes: 2 = configuration error, 3 = lease held by
another writer; neither gets better by retrying now. */}}
{{- define "coinline.podFailurePolicy" -}}
podFailurePolicy:
  rules:
    - action: FailJob
      onExitCodes:
        containerName: coinline
        operator: In
        values: [2, 3]
    - action: Ignore
      onPodConditions:
        - type: DisruptionTarget
          status: "True"
{{- end }}

{{/* Pod spec of a Ray node. KubeRay supplies the `ray start` command; the probes are ours (HTTP, so the
image needs no wget). With the in-tree autoscaler KubeRay manages the head's service account. */}}
{{- define "coinline.rayPodSpec" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- if not .managedSA }}
serviceAccountName: {{ include "coinline.serviceAccountName" $root }}
automountServiceAccountToken: false
{{- end }}
enableServiceLinks: false
securityContext:
  {{- toYaml $v.podSecurityContext | nindent 2 }}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - name: {{ .name }}
    image: {{ include "coinline.rayImage" $root }}
    imagePullPolicy: {{ $v.image.pullPolicy }}
    {{- if .head }}
    ports:
      - {containerPort: 6379, name: gcs-server}
      - {containerPort: 8265, name: dashboard}
      - {containerPort: {{ $v.ray.clientPort }}, name: client}
    {{- end }}
    envFrom:
      - configMapRef:
          name: {{ include "coinline.fullname" $root }}-config
    env:
      {{- include "coinline.env" $root | trim | nindent 6 }}
      {{- with $v.ray.env }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    resources:
      {{- toYaml .resources | nindent 6 }}
    securityContext:
      {{- toYaml $v.securityContext | nindent 6 }}
    readinessProbe:
      httpGet:
        {{- if .head }}
        path: /api/gcs_healthz
        port: 8265
        {{- else }}
        path: /api/local_raylet_healthz
        port: 52365
        {{- end }}
      initialDelaySeconds: 10
      periodSeconds: 5
      timeoutSeconds: 2
      failureThreshold: 20
    livenessProbe:
      httpGet:
        path: /api/local_raylet_healthz
        port: 52365
      initialDelaySeconds: 30
      periodSeconds: 5
      timeoutSeconds: 2
      failureThreshold: 40
    lifecycle:
      preStop:
        exec:
          command: ["/bin/sh", "-c", "ray stop"]
    volumeMounts:
      - name: tmp
        mountPath: /tmp
      - name: dshm
        mountPath: /dev/shm
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: {{ $v.ray.tmpSizeLimit }}
  - name: dshm
    emptyDir:
      medium: Memory
      sizeLimit: {{ $v.ray.shmSizeLimit }}
{{- end }}
