#!/usr/bin/env bash
# Regenerates the committed gRPC stubs from the .proto files. `scripts/gen_proto.sh --check` regenerates into a
# temporary tree and fails if the committed stubs differ (CI runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
out=.
if [ "${1:-}" = "--check" ]; then
  out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
fi
gen() {  # gen <proto dir relative to repo, as a python package path>
  local dir=$1
  mkdir -p "$out/$dir"
  "$PY" -m grpc_tools.protoc -I. --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" "$dir"/*.proto
}
gen topolvm/lvmd/proto
[ -d topolvm/csi/proto ] && ls topolvm/csi/proto/*.proto >/dev/null 2>&1 && gen topolvm/csi/proto
gen topolvm/sidecars/proto   # kubelet's plugin registration API (topolvm-registrar)
if [ "$out" != . ]; then
  status=0
  for f in $(cd "$out" && find . -name '*_pb2*.py*' | sort); do
    if ! cmp -s "$out/$f" "$f"; then echo "stub drift: $f (run scripts/gen_proto.sh)" >&2; status=1; fi
  done
  [ $status = 0 ] && echo "generated stubs are up to date"
  exit $status
fi
