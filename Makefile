# The single entry point: make install | run | test | lint | bench | proto | manifests
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
XDIST := -n 2 --dist loadgroup
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
PYTEST_ARGS ?=
# Go peers and third-party CRDs the suite needs (ci/peers/build.sh): csi-sanity for the HIL csi-sanity suite,
# etcd + kube-apiserver for the local control plane, kube-scheduler for the extender end-to-end tests,
# kube-controller-manager and kwok (with its default Stages) for the end-to-end cluster (tests/support/cluster.py),
# csi-provisioner and csi-resizer for TopoLVM deployed on it (tests/support/stack.py), crds for applying deploy/,
# helm for the chart deploy/helm/topolvm (tests/integration/test_helm_chart.py, `make manifests`), kubelet and pause
# for the HIL node (harness/node_profile.py), hypertopolvm (upstream TopoLVM: the extender baseline and the node
# profile's #1221 baseline image).
# Built once, then taken from ${TOPOLVM_CACHE:-~/.cache/topolvm-py}/peers-v1.
PEERS := csi-sanity etcd kube-apiserver kube-scheduler kube-controller-manager kubelet pause kwok csi-provisioner \
	csi-resizer csi-snapshotter snapshot-controller crds helm hypertopolvm

.PHONY: install system-deps python peers run demo-lvmd test lint unit hil bench proto manifests image clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,sim]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: system-deps $(STAMP)

system-deps:
	scripts/install-system-deps.sh

# Idempotent: a peer already in the cache is not rebuilt (a cold build takes about 15 minutes on 2 cores).
peers:
	ci/peers/build.sh $(PEERS)

# The main job on an embedded default: a capacity-planning simulation of the default cluster (no Kubernetes;
# root only if Debian's python3-venv must be installed first). Outputs (summary.json, series.csv,
# per-node.csv, report.html) go to sim-out/.
run: python $(STAMP)
	$(BIN)/topolvm-sim run --out sim-out

python:
	PY=$(PY) scripts/install-system-deps.sh --python

# lvmd on a loop-device demo VG (needs root).
demo-lvmd: install
	$(BIN)/python scripts/demo_lvmd.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	scripts/gen_proto.sh --check

# Everything CI runs: lint; the peers; the suite on both cores; then the hardware-in-the-loop suites, which
# boot VMs and report each in-VM test as its own result (that needs a single pytest process).
# $(XDIST): each test goes to whichever worker is free, the slowest first (tests/conftest.py's longest_first).
# The fidelity tests' views (docs/fidelity.md) are kept in build/fidelity/.
test: install lint peers
	FIDELITY_REPORT_DIR=$(CURDIR)/build/fidelity $(BIN)/pytest $(XDIST) -m "not hil" $(PYTEST_ARGS)
	$(BIN)/pytest -p no:xdist -m hil $(PYTEST_ARGS)

unit: $(STAMP)
	$(BIN)/pytest $(XDIST) -m "not hil" $(PYTEST_ARGS)

hil: install
	$(BIN)/pytest -p no:xdist -m hil -v $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/lvmd_bench.py

proto: $(STAMP)
	scripts/gen_proto.sh

# deploy/manifests and deploy/tls/cert-manager.yaml from the Helm chart's default values (and deploy/crds into the
# chart's crds/); tests/integration/test_helm_chart.py fails when they drift.
manifests:
	ci/peers/build.sh helm
	$(PY) scripts/render_manifests.py

# The container image topolvm-py:<version> deploy/ runs, built from a Debian rootfs into podman's storage under
# the cache (root; harness/container_image.py); IMAGE_ARCHIVE=file.tar also writes a docker-archive of it.
# tests/integration/test_container_image.py builds it the same way when its inputs changed.
image: install
	$(BIN)/python -m harness.container_image build $(if $(IMAGE_ARCHIVE),--save $(IMAGE_ARCHIVE))

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
