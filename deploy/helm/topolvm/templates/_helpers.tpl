{{/* The image of topolvm-py's own programs. */}}
{{- define "topolvm.image" -}}
image: {{ printf "%s:%s" .Values.image.repository (toString .Values.image.reference) }}
{{- with .Values.image.pullPolicy }}
imagePullPolicy: {{ . }}
{{- end }}
{{- end }}

{{/* The restricted securityContext of every container that needs no privilege. */}}
{{- define "topolvm.restricted" -}}
securityContext:
  allowPrivilegeEscalation: false
  capabilities: {drop: ["ALL"]}
{{- end }}

{{/* image: of a CSI sidecar: upstream's image .Values.image.csi.<KEY>, or with image.csi.builtinSidecars
topolvm-py's image running PROGRAM, our own sidecar of the same job that takes the same args (topolvm/sidecars).
Call with (list $ "KEY" "PROGRAM"). */}}
{{- define "topolvm.sidecarImage" -}}
{{- $root := index . 0 }}
{{- if $root.Values.image.csi.builtinSidecars }}
{{- include "topolvm.image" $root }}
command: [{{ index . 2 }}]
{{- else -}}
image: {{ index $root.Values.image.csi (index . 1) }}
{{- end }}
{{- end }}

{{/* The securityContext of the sidecars beside topolvm-node (csi-registrar, liveness-probe): restricted, and root
for our own sidecars. They open topolvm-node's CSI socket (root's, mode 0600) and the registrar makes its socket in
kubelet's plugins_registry (root's, mode 0750). Upstream's images run as root for that; topolvm-py's image runs
as 65532 unless told. No capability is needed: root owns both, so the owner's permission bits suffice. */}}
{{- define "topolvm.nodeSidecarSecurity" -}}
{{- include "topolvm.restricted" . }}
{{- if .Values.image.csi.builtinSidecars }}
  runAsUser: 0
{{- end }}
{{- end }}

{{/* resources: of one container, from .Values.resources.<name>; nothing when empty. Call with (list $ "name"). */}}
{{- define "topolvm.resources" -}}
{{- $values := index . 0 }}
{{- with index $values.Values.resources (index . 1) }}
resources:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Pod-level settings shared by every workload: priority, pull secrets, placement.
Call with (list $ .Values.<component>). */}}
{{- define "topolvm.podPlacement" -}}
{{- $root := index . 0 }}
{{- $c := index . 1 }}
{{- with $c.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $root.Values.image.pullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The webhook's TLS Secret. */}}
{{- define "topolvm.webhookSecretName" -}}
{{- default "topolvm-webhook-tls" .Values.webhook.secretName }}
{{- end }}

{{/* Whether an lvmd.yaml ConfigMap is needed: a managed lvmd or lvmd embedded in topolvm-node. */}}
{{- define "topolvm.lvmdConfig" -}}
{{- if or .Values.lvmd.managed .Values.node.lvmdEmbedded }}true{{ end }}
{{- end }}

{{/* (list TEXT N): TEXT on new lines indented by N, or nothing at all when TEXT is empty (nindent alone would
leave a blank line behind). */}}
{{- define "topolvm.block" -}}
{{- $text := trim (index . 0) -}}
{{- if $text }}{{ $text | nindent (index . 1) }}{{ end -}}
{{- end }}

{{/* The timings of a liveness probe from livenessProbe.<component> (upstream's values) as YAML, e.g.
include "topolvm.livenessTimings" (list . "topolvm_node"); empty fields are left to kubelet (nothing when all
are). Use through topolvm.block. */}}
{{- define "topolvm.livenessTimings" -}}
{{- $probes := (index . 0).Values.livenessProbe | default dict -}}
{{- $probe := index $probes (index . 1) | default dict -}}
{{- $timings := dict -}}
{{- range $field := list "failureThreshold" "initialDelaySeconds" "timeoutSeconds" "periodSeconds" -}}
{{- with index $probe $field -}}{{- $_ := set $timings $field . -}}{{- end -}}
{{- end -}}
{{- if $timings }}{{ toYaml $timings }}{{ end -}}
{{- end -}}
