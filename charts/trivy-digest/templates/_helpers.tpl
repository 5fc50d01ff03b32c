{{/*
Names and labels.
*/}}
{{- define "trivy-digest.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "trivy-digest.fullname" -}}
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

{{- define "trivy-digest.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "trivy-digest.selectorLabels" -}}
app.kubernetes.io/name: {{ include "trivy-digest.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "trivy-digest.labels" -}}
helm.sh/chart: {{ include "trivy-digest.chart" . }}
{{ include "trivy-digest.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: controller
app.kubernetes.io/part-of: trivy-digest
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "trivy-digest.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "trivy-digest.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The namespace of every namespaced object: namespaceOverride, else the release's.
*/}}
{{- define "trivy-digest.namespace" -}}
{{- .Values.namespaceOverride | default .Release.Namespace | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
[registry/]repository(@digest|:tag). The registry is global.imageRegistry (a mirror),
else image.registry; empty when the repository names its registry itself.
*/}}
{{- define "trivy-digest.image" -}}
{{- $repo := required "image.repository is required: build the image with the repository's Dockerfile and push it to a registry the cluster can pull from" .Values.image.repository }}
{{- $global := .Values.global | default dict }}
{{- $registry := $global.imageRegistry | default .Values.image.registry | default "" | trimSuffix "/" }}
{{- if $registry }}
{{- $repo = printf "%s/%s" $registry $repo }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repo .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
Where the config file is mounted, and the paths of mounted secrets.
*/}}
{{- define "trivy-digest.configDir" -}}/etc/trivy-digest{{- end }}
{{- define "trivy-digest.configFile" -}}trivy-digest.yaml{{- end }}
{{- define "trivy-digest.secretsDir" -}}/var/run/secrets/trivy-digest{{- end }}
{{- define "trivy-digest.storeCaDir" -}}/etc/trivy-digest/store-ca{{- end }}

{{/*
"true" in fleet mode (store.postgres.enabled): the store is a PostgreSQL database, so
there is no volume and the replicas may run on any node.
*/}}
{{- define "trivy-digest.postgres" -}}
{{- $store := .Values.store | default dict }}
{{- $pg := $store.postgres | default dict }}
{{- if $pg.enabled }}true{{ end }}
{{- end }}

{{/*
The port of config.run.listen ("0.0.0.0:8080", "[::]:9090"); 8080 when unset, as in
the binary.
*/}}
{{- define "trivy-digest.port" -}}
{{- $run := .Values.config.run | default dict }}
{{- $listen := $run.listen | default "0.0.0.0:8080" | toString }}
{{- $port := regexFind "[0-9]+$" $listen }}
{{- if or (not $port) (not (contains ":" $listen)) }}
{{- fail (printf "config.run.listen %q: expected an address with a port, such as 0.0.0.0:8080" $listen) }}
{{- end }}
{{- $port }}
{{- end }}

{{/*
The namespace of the leader Lease: config.run.leader_election.namespace, else the
chart's namespace (the binary's POD_NAMESPACE).
*/}}
{{- define "trivy-digest.leaseNamespace" -}}
{{- $run := .Values.config.run | default dict }}
{{- $le := $run.leader_election | default dict }}
{{- $le.namespace | default (include "trivy-digest.namespace" .) }}
{{- end }}

{{- define "trivy-digest.leaseName" -}}
{{- $run := .Values.config.run | default dict }}
{{- $le := $run.leader_election | default dict }}
{{- $le.lease_name | default "trivy-digest" }}
{{- end }}

{{- define "trivy-digest.leaderElection" -}}
{{- $run := .Values.config.run | default dict }}
{{- $le := $run.leader_election | default dict }}
{{- if hasKey $le "enabled" }}{{ $le.enabled }}{{ else }}true{{ end }}
{{- end }}

{{- define "trivy-digest.claimName" -}}
{{- .Values.persistence.existingClaim | default (include "trivy-digest.fullname" .) }}
{{- end }}

{{/*
The Deployment's strategy: Recreate for one replica on a ReadWriteOnce volume (a new Pod
scheduled elsewhere could not attach the volume while the old one holds it); with
PostgreSQL a surge, the new Pod standing by until the old one leaves the Lease.
*/}}
{{- define "trivy-digest.strategy" -}}
{{- if .Values.strategy }}
{{- toYaml .Values.strategy }}
{{- else if include "trivy-digest.postgres" . }}
type: RollingUpdate
rollingUpdate:
  maxSurge: 1
  maxUnavailable: 0
{{- else if and .Values.persistence.enabled (eq (int .Values.replicaCount) 1) }}
type: Recreate
{{- else }}
type: RollingUpdate
rollingUpdate:
  maxSurge: 0
  maxUnavailable: 1
{{- end }}
{{- end }}

{{/*
Refuses values that would deploy something broken, with the reason.
*/}}
{{- define "trivy-digest.validate" -}}
{{- $config := .Values.config | default dict }}
{{- if not (or .Values.configFrom.existingConfigMap .Values.configFrom.existingSecret) }}
{{- if not ($config.cluster | default "" | toString | trim) }}
{{- fail "config.cluster is required: a name for this cluster, different in every cluster (e.g. --set config.cluster=prod-eu-1). It is the default DefectDojo product and the owner of this cluster's DefectDojo tests; with one name for two clusters they would share products and tests" }}
{{- end }}
{{- end }}
{{- $store := $config.store | default "" | toString }}
{{- /* A URL may hold a password: messages never show config.store's value when it is one. */}}
{{- $storeIsURL := regexMatch "(?i)^postgres(ql)?:" (trim $store) }}
{{- $fleet := include "trivy-digest.postgres" . }}
{{- if $fleet }}
{{- include "trivy-digest.validatePostgres" . }}
{{- if and $storeIsURL (ne (trim $store) (.Values.store.postgres.url | default "" | trim)) }}
{{- fail "config.store is a PostgreSQL URL other than store.postgres.url: with store.postgres.enabled the chart sets the store from store.postgres (url or existingSecret); leave config.store at its default" }}
{{- end }}
{{- else if $storeIsURL }}
{{- fail "config.store is a PostgreSQL URL: set store.postgres.enabled=true and the URL in store.postgres.url (or the whole URL in store.postgres.existingSecret), the password in store.postgres.passwordSecret; the chart then mounts no volume" }}
{{- else }}
{{- $dir := trimSuffix "/" .Values.persistence.mountPath }}
{{- if not (hasPrefix (printf "%s/" $dir) $store) }}
{{- fail (printf "config.store %q must be a file under persistence.mountPath (%s/), or the store would be written to the read-only root file system" $store $dir) }}
{{- end }}
{{- end }}
{{- if gt (int .Values.replicaCount) 1 }}
{{- if not (or .Values.persistence.enabled $fleet) }}
{{- fail "replicaCount > 1 needs persistence.enabled=true (or store.postgres.enabled=true): with an emptyDir each replica would keep its own store, and a new leader would start from nothing" }}
{{- end }}
{{- if ne (include "trivy-digest.leaderElection" .) "true" }}
{{- fail "replicaCount > 1 needs config.run.leader_election.enabled=true: two leaders would both export" }}
{{- end }}
{{- end }}
{{- $dojo := $config.defectdojo }}
{{- if and $dojo (not .Values.secrets.defectdojo.existingSecret) (not (and (kindIs "map" $dojo) $dojo.token_file)) }}
{{- fail "config.defectdojo is set but there is no API token: set secrets.defectdojo.existingSecret to the name of a Secret holding it (key secrets.defectdojo.key)" }}
{{- end }}
{{- range $name := list "defectdojo" "smtp" }}
{{- $s := index $.Values.secrets $name }}
{{- if not (has $s.exposeAs (list "file" "env")) }}
{{- fail (printf "secrets.%s.exposeAs %q: one of file, env" $name $s.exposeAs) }}
{{- end }}
{{- end }}
{{- if and .Values.configFrom.existingConfigMap .Values.configFrom.existingSecret }}
{{- fail "configFrom.existingConfigMap and configFrom.existingSecret are both set: the config file comes from one of them" }}
{{- end }}
{{- if and .Values.networkPolicy.enabled (not .Values.networkPolicy.egress.apiServer.cidrs) }}
{{- fail "networkPolicy.enabled needs networkPolicy.egress.apiServer.cidrs: the API server's addresses (kubectl get endpointslices -n default -l kubernetes.io/service-name=kubernetes), or trivy-digest cannot watch anything" }}
{{- end }}
{{- if and .Values.networkPolicy.enabled $fleet }}
{{- $db := .Values.networkPolicy.egress.database | default dict }}
{{- if not (or $db.cidrs $db.peers) }}
{{- fail "networkPolicy.enabled with store.postgres.enabled needs networkPolicy.egress.database.cidrs or .peers: the PostgreSQL server's addresses (or its Pods), or trivy-digest cannot reach its store" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
store.postgres: where the URL, the password and the CA come from. The URL's value is
never part of a message: it may hold a password.
*/}}
{{- define "trivy-digest.validatePostgres" -}}
{{- $pg := .Values.store.postgres }}
{{- $url := $pg.url | default "" | trim }}
{{- if and $url $pg.existingSecret }}
{{- fail "store.postgres.url and store.postgres.existingSecret are both set: the URL comes from one of them" }}
{{- end }}
{{- if not (or $url $pg.existingSecret) }}
{{- fail "store.postgres.enabled needs store.postgres.url (postgres://USER@HOST:PORT/DATABASE?sslmode=verify-full) or store.postgres.existingSecret (a Secret holding the whole URL, key store.postgres.urlKey)" }}
{{- end }}
{{- if $url }}
{{- if or (regexMatch "^[^/?#]*//[^/?#@]*:[^/?#]*@" $url) (regexMatch "(?i)[?&]password=" $url) }}
{{- fail "store.postgres.url holds a password, which would be written into the ConfigMap and the release: keep the URL without it and put the password in a Secret named by store.postgres.passwordSecret (or the whole URL in store.postgres.existingSecret)" }}
{{- end }}
{{- if not (regexMatch "(?i)^postgres(ql)?://" $url) }}
{{- fail "store.postgres.url must be a postgres:// or postgresql:// URL, e.g. postgres://trivy_digest@db.example.com:5432/trivy_digest?sslmode=verify-full" }}
{{- end }}
{{- end }}
{{- if and $pg.caSecret $pg.caConfigMap }}
{{- fail "store.postgres.caSecret and store.postgres.caConfigMap are both set: the CA certificates come from one of them" }}
{{- end }}
{{- if $url }}
{{- $ca := printf "%s/ca.crt" (include "trivy-digest.storeCaDir" .) }}
{{- $names := contains (printf "sslrootcert=%s" $ca) $url }}
{{- if and (or $pg.caSecret $pg.caConfigMap) (not $names) }}
{{- fail (printf "store.postgres.caSecret (or caConfigMap) is mounted as %s, but store.postgres.url does not use it: add sslrootcert=%s to its query" $ca $ca) }}
{{- end }}
{{- if and $names (not (or $pg.caSecret $pg.caConfigMap)) }}
{{- fail (printf "store.postgres.url reads sslrootcert=%s, but neither store.postgres.caSecret nor caConfigMap is set to mount it" $ca) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
One NetworkPolicy egress rule to a destination's cidrs (strings, or ipBlocks with
`cidr` and `except`) and peers on its ports; nothing when it has neither.
*/}}
{{- define "trivy-digest.egressRule" -}}
{{- $dest := .dest }}
{{- if or $dest.cidrs $dest.peers }}
- to:
    {{- range $dest.cidrs }}
    - ipBlock:
        {{- if kindIs "map" . }}
        {{- toYaml . | nindent 8 }}
        {{- else }}
        cidr: {{ . }}
        {{- end }}
    {{- end }}
    {{- with $dest.peers }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    {{- range $port := $dest.ports }}
    {{- range $proto := $.protocols }}
    - port: {{ $port }}
      protocol: {{ $proto }}
    {{- end }}
    {{- end }}
{{- end }}
{{- end }}
