#!/usr/bin/env bash
# Build the upstream Go peers used as baselines by benchmarks and conformance tests, and the local Kubernetes
# control plane used by integration tests.
#
# Usage: ci/peers/build.sh [all | NAME...]      (no NAME: hypertopolvm csi-sanity loadgen, as before)
#
# Installs into ${TOPOLVM_CACHE:-$HOME/.cache/topolvm-py}/peers-v1/bin:
#   hypertopolvm    - upstream TopoLVM; its `topolvm-scheduler` is the extender baseline (bench/extender_bench.py)
#   csi-sanity      - CSI conformance suite (used by the CSI issue)
#   loadgen         - our own closed-loop load generator (ci/peers/loadgen)
#   etcd            - storage for the test control plane (tests/support/controlplane.py)
#   kube-apiserver  - the test control plane's API server
#   kube-scheduler  - real scheduler, for extender end-to-end tests
#   kube-controller-manager - the rest of the control plane (PV binder and expander, garbage collector, node
#                     lifecycle, ...), same version; for the end-to-end cluster (tests/support/cluster.py)
#   kubelet         - the real node agent of the HIL node (harness/node_profile.py: kubelet, containerd and pods
#                     on our volumes inside the VM), same version
#   pause           - our own sandbox ("pause") container program for that node (ci/peers/pause), static
#   kwok            - simulated nodes (and their pods) for the end-to-end cluster; its default Stages (what
#                     kwokctl configures: node-initialize, node-heartbeat-with-lease, pod-ready/-complete/-delete)
#                     and its ClusterRole are copied out of its module into peers-v1/kwok-files
#   crds            - third-party CRDs that deploy/ refers to, copied out of their Go modules into peers-v1/crds:
#                     external-snapshotter (snapshot.storage.k8s.io, client/v8 config/crd) and cert-manager
#                     (cert-manager.io, deploy/crds), for the tests that apply deploy/ to a real kube-apiserver, and
#                     prometheus-operator's PodMonitor and ServiceMonitor (monitoring.coreos.com,
#                     example/prometheus-operator-crd), for the chart's optional PodMonitors
#   helm            - Helm v3, to lint and render deploy/helm/topolvm (tests/integration/test_helm_chart.py) and to
#                     generate deploy/manifests from it (scripts/render_manifests.py)
#   csi-provisioner, csi-resizer
#                   - the upstream CSI sidecars that turn PVCs into CreateVolume calls (and publish
#                     CSIStorageCapacity objects) and PVC expansions into ControllerExpandVolume, for TopoLVM on
#                     the end-to-end cluster (tests/support/stack.py)
#   csi-snapshotter, snapshot-controller
#                   - the upstream snapshot sidecar (beside each controller replica) and the snapshot controller
#                     (one per cluster, as its own ServiceAccount with the ClusterRole upstream ships, copied out
#                     of its module into peers-v1/snapshot-controller-files), for the end-to-end snapshot tests
# The control-plane binaries, the CSI sidecars and kwok are installed as NAME-VERSION with a NAME symlink, so the
# bin directory works as KUBEBUILDER_ASSETS and a version bump rebuilds. Idempotent: a binary already present is
# not rebuilt. Build times and sizes go to peers-v1/build-times.txt.
#
# `go install pkg@version` first; if that fails we build through a throwaway wrapper module (a go.mod that
# requires the tool). The fallback exists because `go install` also loads the module's deprecation notice from
# `@v/list`, which some proxies (including this project's CI proxy) refuse with 403, while `@v/<tag>.*` works.
# v0.41.0 is the newest topolvm tag the proxy serves here (probed with @v/<tag>.info).
#
# etcd and Kubernetes go straight to a wrapper module: their go.mod files carry replace directives (local paths
# to sibling modules / staging), which `go install` refuses. For etcd the local replaces are simply dropped (the
# sibling modules are published at the same tag). For Kubernetes every `k8s.io/<m> => ./staging/src/k8s.io/<m>`
# replace of the tag's go.mod becomes `k8s.io/<m> => k8s.io/<m> v0.<minor>.<patch>`, and the tag's godebug line
# is copied, like upstream's own build. Version ldflags are set as hack/lib/version.sh does, or the binaries
# would report v0.0.0.
#
# The CSI sidecars, kwok and helm (build_wrapped) also go through a wrapper module, whose go.mod is the tag's own
# go.mod renamed (so the build uses exactly the dependency versions upstream released with, and their replaces:
# some pin k8s.io/* modules) plus a requirement on the module itself. Local-path replaces (external-snapshotter's
# client/v8 => ./client) become the sibling module at the same tag. main.version (kwok: consts.Version) is set
# to the tag, as their release builds do. helm gets the ldflags of its own Makefile: its version, and the
# Kubernetes version it renders for (.Capabilities.KubeVersion, `helm lint`'s deprecation checks), which that
# Makefile derives from the k8s.io/client-go it requires (v0.37 -> 1.37); without them helm says v1.20.
set -euo pipefail

TOPOLVM_VERSION="${TOPOLVM_VERSION:-v0.41.0}"
CSI_TEST_VERSION="${CSI_TEST_VERSION:-v5.6.0}"   # CSI spec v1.13 (NodeGetVolumeHealth), as csi.proto
ETCD_VERSION="${ETCD_VERSION:-v3.7.3}"
KUBERNETES_VERSION="${KUBERNETES_VERSION:-v1.37.2}"
SNAPSHOTTER_CLIENT_VERSION="${SNAPSHOTTER_CLIENT_VERSION:-v8.4.0}"   # matches csi-snapshotter in deploy/
CERT_MANAGER_VERSION="${CERT_MANAGER_VERSION:-v1.19.1}"   # the first of its deploy/crds without Helm templating
PROMETHEUS_OPERATOR_VERSION="${PROMETHEUS_OPERATOR_VERSION:-v0.85.0}"   # the newest the proxy serves (@latest)
# kube-controller-manager is built from KUBERNETES_VERSION, like kube-apiserver and kube-scheduler.
# The newest external-provisioner the module proxy serves (v6.3.0 and v6.4.0 listed); built on k8s.io 0.36/0.37.
# deploy/controller.yaml runs the same versions of csi-provisioner and csi-resizer as built here.
CSI_PROVISIONER_VERSION="${CSI_PROVISIONER_VERSION:-v6.4.0}"
# The newest external-resizer/v2 served (v2.2.0, v2.3.0 listed; the v1 path's version list is refused); k8s.io 0.37.
CSI_RESIZER_VERSION="${CSI_RESIZER_VERSION:-v2.3.0}"
# csi-snapshotter and snapshot-controller from the same tag as the snapshot CRDs and deploy/'s csi-snapshotter.
CSI_SNAPSHOTTER_VERSION="${CSI_SNAPSHOTTER_VERSION:-$SNAPSHOTTER_CLIENT_VERSION}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"   # the newest kwok served; built on k8s.io 0.36
HELM_VERSION="${HELM_VERSION:-v3.22.0}"   # the newest helm v3 served; built on k8s.io 0.37
CACHE="${TOPOLVM_CACHE:-$HOME/.cache/topolvm-py}"
BIN="$CACHE/peers-v1/bin"
TIMES="$CACHE/peers-v1/build-times.txt"
mkdir -p "$BIN"

command -v go >/dev/null || { echo "build.sh: go is not installed" >&2; exit 1; }
export CGO_ENABLED=0   # static binaries, no C toolchain needed on a fresh CI machine
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

ALL=(hypertopolvm csi-sanity loadgen etcd kube-apiserver kube-scheduler crds
     kube-controller-manager kubelet pause csi-provisioner csi-resizer csi-snapshotter snapshot-controller kwok helm)
DEFAULT=(hypertopolvm csi-sanity loadgen)
if [[ $# -eq 0 ]]; then
    WANT=("${DEFAULT[@]}")
elif [[ "$*" == all ]]; then
    WANT=("${ALL[@]}")
else
    WANT=("$@")
fi
for name in "${WANT[@]}"; do
    [[ " ${ALL[*]} " == *" $name "* ]] || { echo "build.sh: unknown peer '$name' (known: ${ALL[*]} all)" >&2; exit 2; }
done
wants() { [[ " ${WANT[*]} " == *" $1 "* ]]; }

# record NAME... -- WHAT SECONDS: one line per build with the size of each binary built.
record() {
    local names=() sizes=()
    while [[ "$1" != -- ]]; do names+=("$1"); shift; done
    shift
    local what="$1" secs="$2" n
    for n in "${names[@]}"; do
        sizes+=("$n=$(($(stat -L -c %s "$BIN/$n") / 1048576))MiB")
    done
    local IFS=,
    echo "${names[*]} $what ${secs}s ${sizes[*]} $(date -u +%FT%TZ)" | tee -a "$TIMES"
}

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
    local start
    start=$(date +%s)
    if ! GOBIN="$BIN" go install "$pkg@$version"; then
        echo "build.sh: go install failed, retrying through a wrapper module" >&2
        build_via_wrapper "$name" "$module" "$version" "$pkg"
    fi
    record "$name" -- "$pkg@$version" $(($(date +%s) - start))
}

# link NAME VERSION: point NAME at NAME-VERSION (the file that is actually built and kept).
link() { ln -sfn "$1-$2" "$BIN/$1"; }

build_etcd() {
    if [[ -x "$BIN/etcd-$ETCD_VERSION" ]]; then
        echo "build.sh: etcd $ETCD_VERSION present, skipping"
        link etcd "$ETCD_VERSION"
        return
    fi
    echo "build.sh: building etcd $ETCD_VERSION (wrapper module)"
    local start dir rc=0
    start=$(date +%s)
    dir=$(mktemp -d)
    printf 'module topolvm-py/peers/etcd\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' \
        "$ETCD_VERSION" >"$dir/go.mod"
    (cd "$dir" && GOFLAGS="$GOFLAGS -mod=mod" go build -trimpath -ldflags '-s -w' \
        -o "$BIN/etcd-$ETCD_VERSION.tmp" go.etcd.io/etcd/server/v3) || rc=$?
    rm -rf "$dir"
    [[ $rc -eq 0 ]] || return "$rc"
    mv "$BIN/etcd-$ETCD_VERSION.tmp" "$BIN/etcd-$ETCD_VERSION"
    link etcd "$ETCD_VERSION"
    record etcd -- "go.etcd.io/etcd/server/v3@$ETCD_VERSION" $(($(date +%s) - start))
}

# module_field MODULE@VERSION FIELD: a field (Dir, GoMod, Time...) of `go mod download -json`, downloading the
# module into the module cache first if need be.
module_field() {
    go mod download -json "$1" | sed -n "s/^[[:space:]]*\"$2\": \"\(.*\)\",\$/\1/p"
}

# copy_kwok_files VERSION: kwok's default Stages and its in-cluster ClusterRole, out of sigs.k8s.io/kwok@VERSION
# (through the module cache) into peers-v1/kwok-files-VERSION/{stages,rbac}, and a kwok-files symlink to it. kwok
# run outside kwokctl refuses to start without Stages ("no stages found"); these are the ones kwokctl writes into
# its kwok.yaml by default (pkg/kwokctl/runtime/cluster.go), the heartbeat being the lease variant.
copy_kwok_files() {
    local version="$1"
    local dest="$CACHE/peers-v1/kwok-files-$version"
    if [[ -d "$dest" ]]; then
        echo "build.sh: kwok files $version present, skipping"
    else
        local src
        src=$(module_field "sigs.k8s.io/kwok@$version" Dir)
        [[ -d "$src/kustomize/stage" ]] || { echo "build.sh: cannot download sigs.k8s.io/kwok@$version" >&2; return 1; }
        mkdir -p "$dest.tmp/stages" "$dest.tmp/rbac"
        cp "$src/kustomize/stage/node/fast/node-initialize.yaml" \
            "$src/kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml" \
            "$src/kustomize/stage/pod/fast/pod-ready.yaml" \
            "$src/kustomize/stage/pod/fast/pod-complete.yaml" \
            "$src/kustomize/stage/pod/fast/pod-delete.yaml" "$dest.tmp/stages/"
        cp "$src/kustomize/rbac/role.yaml" "$dest.tmp/rbac/"
        cp "$src/LICENSE" "$dest.tmp/"
        chmod -R u+w "$dest.tmp"   # the module cache is read-only
        mv "$dest.tmp" "$dest"
        echo "build.sh: kwok files $version -> $dest"
    fi
    ln -sfn "kwok-files-$version" "$CACHE/peers-v1/kwok-files"
}

# copy_crds NAME MODULE VERSION DIR GLOB: DIR/GLOB of the module's zip (through the module cache) into
# peers-v1/crds/NAME-VERSION, and a NAME symlink to it. Only the module is downloaded, nothing is built.
copy_crds() {
    copy_module_files "$CACHE/peers-v1/crds" "$@"
}

# copy_module_files BASE NAME MODULE VERSION DIR GLOB: as copy_crds, into BASE/NAME-VERSION.
copy_module_files() {
    local base="$1" name="$2" module="$3" version="$4" subdir="$5" pattern="$6"
    local dest="$base/$name-$version"
    if [[ -d "$dest" ]]; then
        echo "build.sh: $name files $version present, skipping"
    else
        local src
        src=$(module_field "$module@$version" Dir)
        [[ -d "$src/$subdir" ]] || { echo "build.sh: cannot download $module@$version" >&2; return 1; }
        mkdir -p "$dest.tmp"
        # The glob is expanded here on purpose: it names the files to copy.
        # shellcheck disable=SC2086
        cp "$src/$subdir"/$pattern "$dest.tmp/"
        chmod -R u+w "$dest.tmp"   # the module cache is read-only
        mv "$dest.tmp" "$dest"
        echo "build.sh: $name files $version -> $dest"
    fi
    ln -sfn "$name-$version" "$base/$name"
}

# missing VERSION CMD...: TODO becomes the CMDs not yet built as CMD-VERSION; the others are linked as CMD.
missing() {
    local v="$1" cmd
    shift
    TODO=()
    for cmd in "$@"; do
        if [[ -x "$BIN/$cmd-$v" ]]; then
            echo "build.sh: $cmd $v present, skipping"
            link "$cmd" "$v"
        else
            TODO+=("$cmd")
        fi
    done
}

# go_build_cmds DIR VERSION LDFLAGS WHAT START PREFIX CMD...: build PREFIX/CMD for each CMD in one go build in the
# wrapper module DIR, install each as CMD-VERSION with a CMD symlink and record the build (WHAT, since START);
# DIR is removed either way.
go_build_cmds() {
    local dir="$1" v="$2" ldflags="$3" what="$4" start="$5" prefix="$6" cmd rc=0 pkgs=()
    shift 6
    for cmd in "$@"; do pkgs+=("$prefix/$cmd"); done
    mkdir "$dir/out"
    (cd "$dir" && GOFLAGS="$GOFLAGS -mod=mod" go build -trimpath -ldflags "$ldflags" -o out/ "${pkgs[@]}") || rc=$?
    if [[ $rc -eq 0 ]]; then
        for cmd in "$@"; do
            mv "$dir/out/$cmd" "$BIN/$cmd-$v"
            link "$cmd" "$v"
        done
    else
        echo "build.sh: $what build failed; wrapper go.mod was:" >&2
        cat "$dir/go.mod" >&2
    fi
    rm -rf "$dir"
    [[ $rc -eq 0 ]] || return "$rc"
    record "$@" -- "$what" $(($(date +%s) - start))
}

# build_kubernetes CMD...: build k8s.io/kubernetes/cmd/CMD for each CMD not yet present, in one go build.
build_kubernetes() {
    local v="$KUBERNETES_VERSION"
    missing "$v" "$@"
    local todo=("${TODO[@]}")
    [[ ${#todo[@]} -gt 0 ]] || return 0
    echo "build.sh: building ${todo[*]} $v (wrapper module)"
    local start
    start=$(date +%s)
    # The tag's go.mod names the staging modules and the godebug default.
    local gomod
    gomod=$(module_field "k8s.io/kubernetes@$v" GoMod)
    [[ -f "$gomod" ]] || { echo "build.sh: cannot download k8s.io/kubernetes@$v" >&2; return 1; }
    local minor patch staging_version
    minor=$(echo "$v" | cut -d. -f2)
    patch=$(echo "$v" | cut -d. -f3)
    staging_version="v0.$minor.$patch"
    local dir
    dir=$(mktemp -d)
    {
        printf 'module topolvm-py/peers/kubernetes\n\n'
        grep -E '^go [0-9.]+$' "$gomod"
        printf '\n'
        grep -E '^godebug ' "$gomod" || true
        printf '\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$v"
        sed -n 's|^[[:space:]]*\(k8s.io/[^ ]*\) => ./staging/src/k8s.io/.*$|\t\1 => \1 '"$staging_version"'|p' "$gomod"
        printf ')\n'
    } >"$dir/go.mod"
    local build_date ldflags="-s -w" key val
    build_date=$(module_field "k8s.io/kubernetes@$v" Time)
    for kv in "gitVersion=$v" "gitMajor=1" "gitMinor=$minor" "gitTreeState=clean" "buildDate=${build_date:-unknown}"; do
        key=${kv%%=*}
        val=${kv#*=}
        ldflags+=" -X k8s.io/component-base/version.$key=$val -X k8s.io/client-go/pkg/version.$key=$val"
    done
    go_build_cmds "$dir" "$v" "$ldflags" "k8s.io/kubernetes@$v" "$start" k8s.io/kubernetes/cmd "${todo[@]}"
}

# build_wrapped MODULE VERSION LDFLAGS CMD...: build MODULE/cmd/CMD as CMD-VERSION (and a CMD symlink) for each
# CMD not yet present, in one go build through a wrapper module made from the tag's own go.mod.
build_wrapped() {
    local module="$1" v="$2" xflags="$3"
    shift 3
    missing "$v" "$@"
    local todo=("${TODO[@]}")
    [[ ${#todo[@]} -gt 0 ]] || return 0
    echo "build.sh: building ${todo[*]} $v (wrapper module)"
    local start src
    start=$(date +%s)
    src=$(module_field "$module@$v" Dir)
    [[ -f "$src/go.mod" ]] || { echo "build.sh: cannot download $module@$v" >&2; return 1; }
    local dir old
    dir=$(mktemp -d)
    cp "$src/go.mod" "$dir/go.mod"
    if [[ -f "$src/go.sum" ]]; then cp "$src/go.sum" "$dir/go.sum"; fi
    chmod u+w "$dir"/go.*   # copied out of the read-only module cache
    (cd "$dir" && go mod edit -module "topolvm-py/peers/${todo[0]}" -require "$module@$v")
    # Replaces by local path, single-line or inside a replace block: OLD [VERSION] => ./DIR or ../DIR.
    local local_replace='^[[:space:]]*(replace[[:space:]]+)?([^[:space:]()]+)([[:space:]]+v[^[:space:]]+)?'
    local_replace+='[[:space:]]+=>[[:space:]]+\.\.?/.*$'
    while read -r old; do
        (cd "$dir" && go mod edit -replace "$old=$old@$v")
    done < <(sed -nE "s#$local_replace#\\2#p" "$dir/go.mod")
    go_build_cmds "$dir" "$v" "-s -w $xflags" "$module@$v" "$start" "$module/cmd" "${todo[@]}"
}

if wants hypertopolvm; then
    install_peer hypertopolvm github.com/topolvm/topolvm "$TOPOLVM_VERSION" \
        github.com/topolvm/topolvm/cmd/hypertopolvm
fi
if wants csi-sanity; then
    # Kept as csi-sanity-VERSION (csi-sanity links to it): a new version is built even where an old one is.
    if [[ ! -x "$BIN/csi-sanity-$CSI_TEST_VERSION" ]]; then
        rm -f "$BIN/csi-sanity"   # the link, or an unversioned build from before
        install_peer csi-sanity github.com/kubernetes-csi/csi-test/v5 "$CSI_TEST_VERSION" \
            github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity
        mv "$BIN/csi-sanity" "$BIN/csi-sanity-$CSI_TEST_VERSION"
    fi
    link csi-sanity "$CSI_TEST_VERSION"
fi
if wants loadgen; then
    # Our own closed-loop load generator (stdlib only), shared by every side of a benchmark.
    LOADGEN_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/loadgen"
    LOADGEN_SUM=$(cat "$LOADGEN_SRC/main.go" "$LOADGEN_SRC/go.mod" | sha256sum | cut -c1-12)
    if [[ ! -x "$BIN/loadgen-$LOADGEN_SUM" ]]; then
        (cd "$LOADGEN_SRC" && go build -o "$BIN/loadgen-$LOADGEN_SUM" .)
        echo "build.sh: built loadgen ($LOADGEN_SUM)"
    fi
    ln -sfn "loadgen-$LOADGEN_SUM" "$BIN/loadgen"
fi
if wants pause; then
    # Our own pause program (stdlib only), named by the hash of its source like loadgen.
    PAUSE_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/pause"
    PAUSE_SUM=$(cat "$PAUSE_SRC/main.go" "$PAUSE_SRC/go.mod" | sha256sum | cut -c1-12)
    if [[ ! -x "$BIN/pause-$PAUSE_SUM" ]]; then
        (cd "$PAUSE_SRC" && go build -trimpath -ldflags '-s -w' -o "$BIN/pause-$PAUSE_SUM" .)
        echo "build.sh: built pause ($PAUSE_SUM)"
    fi
    ln -sfn "pause-$PAUSE_SUM" "$BIN/pause"
fi
if wants etcd; then
    build_etcd
fi
if wants crds; then
    copy_crds external-snapshotter github.com/kubernetes-csi/external-snapshotter/client/v8 \
        "$SNAPSHOTTER_CLIENT_VERSION" config/crd 'snapshot.storage.k8s.io_*.yaml'
    copy_crds cert-manager github.com/cert-manager/cert-manager "$CERT_MANAGER_VERSION" deploy/crds \
        'cert-manager.io_*.yaml'
    copy_crds prometheus-operator github.com/prometheus-operator/prometheus-operator "$PROMETHEUS_OPERATOR_VERSION" \
        example/prometheus-operator-crd 'monitoring.coreos.com_*monitors.yaml'
fi
k8s_cmds=()
for cmd in kube-apiserver kube-scheduler kube-controller-manager kubelet; do
    if wants "$cmd"; then k8s_cmds+=("$cmd"); fi
done
if [[ ${#k8s_cmds[@]} -gt 0 ]]; then
    build_kubernetes "${k8s_cmds[@]}"
fi
if wants csi-provisioner; then
    build_wrapped github.com/kubernetes-csi/external-provisioner/v6 "$CSI_PROVISIONER_VERSION" \
        "-X main.version=$CSI_PROVISIONER_VERSION" csi-provisioner
fi
if wants csi-resizer; then
    build_wrapped github.com/kubernetes-csi/external-resizer/v2 "$CSI_RESIZER_VERSION" \
        "-X main.version=$CSI_RESIZER_VERSION" csi-resizer
fi
snapshot_cmds=()
for cmd in csi-snapshotter snapshot-controller; do
    if wants "$cmd"; then snapshot_cmds+=("$cmd"); fi
done
if [[ ${#snapshot_cmds[@]} -gt 0 ]]; then
    build_wrapped github.com/kubernetes-csi/external-snapshotter/v8 "$CSI_SNAPSHOTTER_VERSION" \
        "-X main.version=$CSI_SNAPSHOTTER_VERSION" "${snapshot_cmds[@]}"
fi
if wants snapshot-controller; then
    copy_module_files "$CACHE/peers-v1" snapshot-controller-files github.com/kubernetes-csi/external-snapshotter/v8 \
        "$CSI_SNAPSHOTTER_VERSION" deploy/kubernetes/snapshot-controller 'rbac-snapshot-controller.yaml'
fi
if wants kwok; then
    build_wrapped sigs.k8s.io/kwok "$KWOK_VERSION" "-X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" kwok
    copy_kwok_files "$KWOK_VERSION"
fi
if wants helm; then
    helm_gomod=$(module_field "helm.sh/helm/v3@$HELM_VERSION" GoMod)
    [[ -f "$helm_gomod" ]] || { echo "build.sh: cannot download helm.sh/helm/v3@$HELM_VERSION" >&2; exit 1; }
    helm_k8s_minor=$(sed -nE 's#^[[:space:]]*k8s.io/client-go v0\.([0-9]+)\..*$#\1#p' "$helm_gomod")
    helm_flags="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
    helm_flags+=" -X helm.sh/helm/v3/internal/version.metadata= -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
    for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
        helm_flags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$helm_k8s_minor"
    done
    build_wrapped helm.sh/helm/v3 "$HELM_VERSION" "$helm_flags" helm
fi
echo "build.sh: peers in $BIN"
