#!/usr/bin/env bash
# Install topolvm-py's prerequisites and chart into the cluster of $KUBECONFIG (kind: ci/kind/run.sh; k3s:
# tests/integration/test_k3s.py). Needs kubectl and helm; the image topolvm-py:<version> must be on the nodes.
#   1. the snapshot CRDs and snapshot-controller of external-snapshotter v8.4.0 (the version deploy/ is tested with)
#   2. the namespace with its opt-out label, then the chart with ci/kind/values.yaml
#   3. waits until lvmd, topolvm-node and topolvm-controller are ready
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${KUBECONFIG:?the cluster's kubeconfig}"
HELM=${HELM:-helm}
snapshotter=https://github.com/kubernetes-csi/external-snapshotter
kubectl apply -k "$snapshotter/client/config/crd?ref=v8.4.0"
kubectl apply -k "$snapshotter/deploy/kubernetes/snapshot-controller?ref=v8.4.0"
kubectl apply -f deploy/manifests/namespace.yaml
"$HELM" upgrade --install topolvm deploy/helm/topolvm -n topolvm-system --set namespace.create=false \
    --values ci/kind/values.yaml --wait --timeout 5m
kubectl -n topolvm-system rollout status daemonset/topolvm-lvmd --timeout=3m
kubectl -n topolvm-system rollout status daemonset/topolvm-node --timeout=3m
kubectl -n topolvm-system rollout status deployment/topolvm-controller --timeout=3m
