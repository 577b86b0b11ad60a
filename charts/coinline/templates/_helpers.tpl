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

{{- define "coinline.rayImage" -}}
{{- $img := dict "repository" (default .Values.image.repository .Values.ray.image.repository) "tag" (default .Values.image.tag .Values.ray.image.tag) "digest" (ternary .Values.image.digest "" (and (empty .Values.ray.image.repository) (empty .Values.ray.image.tag))) -}}
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

{{- define "coinline.minioEndpoint" -}}
{{- default (printf "http://%s.%s.svc:%d" .Values.minio.serviceName .Release.Namespace (int .Values.minio.port)) .Values.minio.endpoint }}
{{- end }}

{{/* Environment of every coinline container: secrets by key (optional), then fixed and extra env. */}}
{{- define "coinline.env" -}}
{{- $secret := include "coinline.secretName" . -}}
{{- if $secret }}
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

{{/*
The pod spec shared by the CronJobs, the follower and the uploader.
Call with (dict "root" $ "component" "run" "args" list "resources" map "shm" "2Gi" "restartPolicy" "Never").
*/}}
{{- define "coinline.podSpec" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
serviceAccountName: {{ include "coinline.serviceAccountName" $root }}
automountServiceAccountToken: false
enableServiceLinks: false
restartPolicy: {{ .restartPolicy }}
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
containers:
  - name: coinline
    image: {{ include "coinline.image" $v.image }}
    imagePullPolicy: {{ $v.image.pullPolicy }}
    {{- with .command }}
    command:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    args:
      {{- toYaml .args | nindent 6 }}
    workingDir: /var/lib/coinline
    envFrom:
      - configMapRef:
          name: {{ include "coinline.fullname" $root }}-config
    env:
      {{- include "coinline.env" $root | trim | nindent 6 }}
      {{- if $v.ray.enabled }}
      - name: RAY_ADDRESS
        value: {{ include "coinline.rayAddress" $root | quote }}
      {{- with $v.ray.env }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
      {{- end }}
      {{- with .extraEnv }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    resources:
      {{- toYaml .resources | nindent 6 }}
    securityContext:
      {{- toYaml $v.securityContext | nindent 6 }}
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
      {{- toYaml . | nindent 6 }}
      {{- end }}
volumes:
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
  {{- toYaml . | nindent 2 }}
  {{- end }}
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
