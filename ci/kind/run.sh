#!/usr/bin/env bash
# topolvm-py on a kind cluster, end to end, for users with Docker (this project's CI has none: ci/kind/README.md).
# Needs root (loop device, image build), docker, kind, kubectl, helm and lvm2 with dm-thin-pool on the host.
#   ci/kind/run.sh          # build the image, create the cluster, run the scenario, delete everything
#   KEEP=1 ci/kind/run.sh   # leave the cluster and the volume group for a look
set -euo pipefail
cd "$(dirname "$0")/../.."
name=topolvm-py
work=${WORK:-/tmp/topolvm-py-kind}
mkdir -p "$work"
cleanup() {
    if [ -z "${KEEP:-}" ]; then
        kind delete cluster --name "$name" || true
        ci/kind/loop-vg.sh delete "$work" || true
    fi
}
trap cleanup EXIT
for tool in docker kind kubectl helm lvm losetup; do
    command -v "$tool" >/dev/null || { echo "ci/kind/run.sh: $tool is needed" >&2; exit 1; }
done
make image IMAGE_ARCHIVE="$work/topolvm-py.tar"
ci/kind/loop-vg.sh create "$work"
kind create cluster --name "$name" --config ci/kind/kind-config.yaml --kubeconfig "$work/kubeconfig"
kind load image-archive "$work/topolvm-py.tar" --name "$name"
export KUBECONFIG="$work/kubeconfig"
ci/kind/install.sh
.venv/bin/python ci/kind/scenario.py --kubeconfig "$KUBECONFIG"
