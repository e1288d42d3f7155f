#!/usr/bin/env bash
# Build the upstream Go peers used as baselines by benchmarks and conformance tests.
#
# Installs into ${TOPOLVM_CACHE:-$HOME/.cache/topolvm-py}/peers-v1/bin:
#   hypertopolvm  - upstream TopoLVM; its `topolvm-scheduler` is the extender baseline (bench/extender_bench.py)
#   csi-sanity    - CSI conformance suite (used by the CSI issue)
# Idempotent: a binary already present is not rebuilt. Build times go to peers-v1/build-times.txt.
#
# `go install pkg@version` first; if that fails we build through a throwaway wrapper module (a go.mod that
# requires the tool). The fallback exists because `go install` also loads the module's deprecation notice from
# `@v/list`, which some proxies (including this project's CI proxy) refuse with 403, while `@v/<tag>.*` works.
# v0.41.0 is the newest topolvm tag the proxy serves here (probed with @v/<tag>.info).
set -euo pipefail

TOPOLVM_VERSION="${TOPOLVM_VERSION:-v0.41.0}"
CSI_TEST_VERSION="${CSI_TEST_VERSION:-v5.4.0}"
CACHE="${TOPOLVM_CACHE:-$HOME/.cache/topolvm-py}"
BIN="$CACHE/peers-v1/bin"
TIMES="$CACHE/peers-v1/build-times.txt"
mkdir -p "$BIN"

command -v go >/dev/null || { echo "build.sh: go is not installed" >&2; exit 1; }
export CGO_ENABLED=0   # static binaries, no C toolchain needed on a fresh CI machine
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

build_via_wrapper() {
    local name="$1" module="$2" version="$3" pkg="$4"
    local dir
    dir=$(mktemp -d)
    printf 'module topolvm-py/peers/%s\n\ngo 1.25.0\n\nrequire %s %s\n' "$name" "$module" "$version" >"$dir/go.mod"
    local rc=0
    (cd "$dir" && GOFLAGS="$GOFLAGS -mod=mod" go build -o "$BIN/$name" "$pkg") || rc=$?
    rm -rf "$dir"
    return "$rc"
}

install_peer() {
    local name="$1" module="$2" version="$3" pkg="$4"
    if [[ -x "$BIN/$name" ]]; then
        echo "build.sh: $name present, skipping ($BIN/$name)"
        return
    fi
    echo "build.sh: building $pkg@$version"
    local start end
    start=$(date +%s)
    if ! GOBIN="$BIN" go install "$pkg@$version"; then
        echo "build.sh: go install failed, retrying through a wrapper module" >&2
        build_via_wrapper "$name" "$module" "$version" "$pkg"
    fi
    end=$(date +%s)
    echo "$name $pkg@$version $((end - start))s $(date -u +%FT%TZ)" | tee -a "$TIMES"
}

install_peer hypertopolvm github.com/topolvm/topolvm "$TOPOLVM_VERSION" \
    github.com/topolvm/topolvm/cmd/hypertopolvm
install_peer csi-sanity github.com/kubernetes-csi/csi-test/v5 "$CSI_TEST_VERSION" \
    github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity
# Our own closed-loop load generator (stdlib only), shared by every side of a benchmark.
LOADGEN_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/loadgen"
LOADGEN_SUM=$(cat "$LOADGEN_SRC/main.go" "$LOADGEN_SRC/go.mod" | sha256sum | cut -c1-12)
if [[ ! -x "$BIN/loadgen-$LOADGEN_SUM" ]]; then
    (cd "$LOADGEN_SRC" && go build -o "$BIN/loadgen-$LOADGEN_SUM" .)
    echo "build.sh: built loadgen ($LOADGEN_SUM)"
fi
ln -sfn "loadgen-$LOADGEN_SUM" "$BIN/loadgen"
echo "build.sh: peers in $BIN"
