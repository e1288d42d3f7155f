"""The extender's over-commit protection under the real kube-scheduler (v1.37.2, built by
``ci/peers/build.sh kube-scheduler``), both configured as deploy/ configures them.

A burst of 2N pods, each with one 40 GiB WaitForFirstConsumer claim, lands on N nodes of 100 GiB: two claims
fit a node, a third would over-commit it. Nobody provisions, so no annotation ever drops and only the
extender's reservations keep the pods apart; kube-scheduler's choice is read from each claim's
``volume.kubernetes.io/selected-node`` (written by VolumeBinding's PreBind, which then waits for a provisioner
that never comes: fine, only the choice matters here). All N nodes tie for the extender's top score, and
kube-scheduler's NodeResourcesBalancedAllocation prefers the node already holding an assumed pod: so unless
kube-scheduler takes the node the reservation is on, or the pod is held on every tied node, the burst piles up
(the control case, where the extender holds the pod on its winner but kube-scheduler sees equal scores: 18 of
30 nodes got 3 claims in one run).

The cluster is what production has, minus kubelets and a provisioner: deploy/'s CSIDriver (storageCapacity:
true) with one CSIStorageCapacity of 100 GiB per node, so VolumeBinding runs its capacity filter and, with
StorageCapacityScoring (beta, on by default in v1.37), its capacity score, as in a real cluster; Nodes that are
Ready and untainted; the webhook's pod annotation and ``topolvm.io/capacity`` resource written by hand.
topolvm-scheduler runs as deploy/'s DaemonSet runs it (its ConfigMap's options, ``--watch-nodes --watch-pods``)
under the token of deploy/'s topolvm-scheduler ServiceAccount; kube-scheduler runs deploy/scheduler-config.yaml
with the admin's kubeconfig (it needs to write bindings and claims), calling the extender through a relay
(``tests.support.extender_proxy``) that notes the node the extender named for each pod.

Needs etcd, kube-apiserver and kube-scheduler; skips without them, fails in CI.
"""

from __future__ import annotations

import collections
import dataclasses
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import vm
from tests.support import deployment, driver, extender_proxy, peers, processes
from tests.support.controlplane import ControlPlane
from topolvm import constants
from topolvm.core import workloads

GiB = 1 << 30
NODES = 30
PODS = 2 * NODES
NODE_BYTES = 100 * GiB
CLAIM_BYTES = 40 * GiB
PER_NODE = NODE_BYTES // CLAIM_BYTES  # claims that fit a node: 2
SELECTED_NODE = workloads.SELECTED_NODE_ANNOTATION
TOPOLOGY_KEY = "topology.topolvm.io/node"
SETTLED_AFTER = 10.0  # seconds without a new selected-node before a run that has not placed every pod is judged
TIMEOUT = 90.0


@pytest.fixture(scope="module")
def scheduler_kubeconfig(kube_api: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A kubeconfig with the bound token of deploy/'s topolvm-scheduler ServiceAccount (rbac-scheduler.yaml)."""
    applier = deployment.Applier(kube_api)
    manifests = deployment.DEPLOY / "manifests"
    applier.apply_files([manifests / "namespace.yaml", manifests / "rbac-scheduler.yaml", manifests / "csidriver.yaml"])
    token = deployment.service_account_token(kube_api, "topolvm-scheduler")
    path = tmp_path_factory.mktemp("extender-kube-scheduler") / "topolvm-scheduler.kubeconfig"
    return deployment.write_kubeconfig(kube_api, token, path)


def extender_options(port: int, tie_break: str | None) -> str:
    """deploy/'s ConfigMap options with the test's listen address (and the tie-break when one is given)."""
    for doc in deployment.documents(deployment.DEPLOY / "manifests" / "scheduler.yaml"):
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "topolvm-scheduler-options":
            options = yaml.safe_load(doc["data"]["scheduler-options.yaml"])
            break
    else:
        raise AssertionError("deploy/manifests/scheduler.yaml has no topolvm-scheduler-options ConfigMap")
    options["listen"] = f"127.0.0.1:{port}"
    if tie_break is not None:
        options["tie-break"] = tie_break
    return yaml.safe_dump(options)


def scheduler_configuration(port: int, kubeconfig: str) -> str:
    """deploy/scheduler-config.yaml pointed at the test's extender, with a kubeconfig and no leader election."""
    (config,) = deployment.documents(deployment.DEPLOY / "scheduler-config.yaml")
    (extender,) = config["extenders"]
    extender["urlPrefix"] = f"http://127.0.0.1:{port}"
    config["clientConnection"] = {"kubeconfig": kubeconfig}
    config["leaderElection"] = {"leaderElect": False}
    return yaml.safe_dump(config)


class World:
    """The objects of one run, all named after ``tag`` and deleted by ``clean``."""

    def __init__(self, plane: ControlPlane, tag: str) -> None:
        self.plane = plane
        self.tag = tag
        self.namespace = tag
        self.storage_class = f"{tag}-lvm"
        self.nodes = [f"{tag}-n{i:02}" for i in range(NODES)]

    def call(self, method: str, path: str, body: object | None = None, *, merge: bool = False) -> Any:
        kind = "application/merge-patch+json" if merge else "application/json"
        code, reply = self.plane.request(method, path, body, content_type=kind)
        expect = (200,) if merge else (200, 201)
        assert code in expect, f"{method} {path}: HTTP {code}: {reply.get('message')}"
        return reply

    def build(self) -> None:
        self.call("POST", "/api/v1/namespaces", {"metadata": {"name": self.namespace}})
        storage_class = {
            "metadata": {"name": self.storage_class},
            "provisioner": constants.PLUGIN_NAME,
            "volumeBindingMode": "WaitForFirstConsumer",
        }
        self.call("POST", "/apis/storage.k8s.io/v1/storageclasses", storage_class)
        for node in self.nodes:
            self.call("POST", "/api/v1/nodes", self.node(node))
            # A new Node is Ready only by its status (kubelet's job), and the TaintNodesByCondition admission
            # plugin gave it node.kubernetes.io/not-ready until the node lifecycle controller removes it.
            self.call("PUT", f"/api/v1/nodes/{node}/status", self.node(node, status=True))
            self.call("PATCH", f"/api/v1/nodes/{node}", {"spec": {"taints": None}}, merge=True)
            capacity = {
                "metadata": {"name": node},
                "storageClassName": self.storage_class,
                "nodeTopology": {"matchLabels": {TOPOLOGY_KEY: node}},
                "capacity": str(NODE_BYTES),
            }
            self.call("POST", f"/apis/storage.k8s.io/v1/namespaces/{self.namespace}/csistoragecapacities", capacity)

    def node(self, name: str, *, status: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "metadata": {
                "name": name,
                "labels": {"kubernetes.io/hostname": name, TOPOLOGY_KEY: name, "extender-test": self.tag},
                "annotations": {constants.capacity_annotation(""): str(NODE_BYTES)},
            }
        }
        if status:
            _, current = self.plane.request("GET", f"/api/v1/nodes/{name}")
            resources = {"cpu": "64", "memory": "256Gi", "pods": "110"}
            ready = {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "test"}
            body = {**current, "status": {"allocatable": resources, "capacity": resources, "conditions": [ready]}}
        return body

    def ready_nodes(self) -> int:
        _, listed = self.plane.request("GET", f"/api/v1/nodes?labelSelector=extender-test%3D{self.tag}")
        return sum(not item["spec"].get("taints") for item in listed.get("items", []))

    def burst(self) -> None:
        """2N claims, then 2N pods as fast as the API server takes them."""
        for i in range(PODS):
            claim = {
                "metadata": {"name": f"data-{i}"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": self.storage_class,
                    "resources": {"requests": {"storage": str(CLAIM_BYTES)}},
                },
            }
            self.call("POST", f"/api/v1/namespaces/{self.namespace}/persistentvolumeclaims", claim)
        for i in range(PODS):
            self.call("POST", f"/api/v1/namespaces/{self.namespace}/pods", self.pod(i))

    def pod(self, i: int) -> dict[str, Any]:
        # What the webhook would add: the request per device class, and the resource that routes the pod to the
        # extender (ignoredByScheduler: NodeResourcesFit does not count it).
        capacity = {constants.CAPACITY_RESOURCE: "1"}
        return {
            "metadata": {"name": f"p-{i}", "annotations": {constants.capacity_annotation(""): str(CLAIM_BYTES)}},
            "spec": {
                "nodeSelector": {"extender-test": self.tag},
                "containers": [
                    {
                        "name": "c",
                        "image": "registry.k8s.io/pause:3.10",
                        "resources": {"requests": {"cpu": "100m", "memory": "128Mi", **capacity}, "limits": capacity},
                    }
                ],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": f"data-{i}"}}],
            },
        }

    def selected(self) -> dict[str, str]:
        """Claim -> the node kube-scheduler chose for it."""
        reply = self.call("GET", f"/api/v1/namespaces/{self.namespace}/persistentvolumeclaims")
        chosen = {}
        for item in reply["items"]:
            node = (item["metadata"].get("annotations") or {}).get(SELECTED_NODE)
            if node:
                chosen[item["metadata"]["name"]] = node
        return chosen

    def clean(self) -> None:
        base = f"/api/v1/namespaces/{self.namespace}"
        for path in (f"{base}/pods", f"{base}/persistentvolumeclaims"):
            self.plane.request("DELETE", path)  # deletecollection: no kubelet, so pending pods go at once
        self.plane.request("DELETE", f"/apis/storage.k8s.io/v1/namespaces/{self.namespace}/csistoragecapacities")
        for node in self.nodes:
            self.plane.request("DELETE", f"/api/v1/nodes/{node}")
        self.plane.request("DELETE", f"/apis/storage.k8s.io/v1/storageclasses/{self.storage_class}")
        self.plane.request("DELETE", base)


def wait_for_placements(world: World) -> dict[str, str]:
    """Every claim's selected-node, or what there is once nothing new came for ``SETTLED_AFTER`` seconds."""
    deadline = time.monotonic() + TIMEOUT
    chosen: dict[str, str] = {}
    changed = time.monotonic()
    while len(chosen) < PODS and time.monotonic() < deadline and time.monotonic() - changed < SETTLED_AFTER:
        time.sleep(0.5)
        now = world.selected()
        if now != chosen:
            chosen, changed = now, time.monotonic()
    return chosen


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text: str = response.read().decode()
    return "\n".join(line for line in text.splitlines() if line.startswith("topolvm_extender_reservation"))


@dataclasses.dataclass(frozen=True)
class Case:
    tie_break: str | None  # None: deploy/'s ConfigMap as shipped
    equalize: bool = False  # the relay gives every node the same score (the control)


CASES = [
    pytest.param(Case(None), id="deploy-tie-break-extender"),
    pytest.param(Case("scheduler"), id="tie-break-scheduler"),
    pytest.param(Case(None, equalize=True), id="control-equal-scores"),
]


@pytest.mark.parametrize("case", CASES)
def test_a_burst_on_tied_nodes_under_the_real_kube_scheduler(
    kube_api: ControlPlane, scheduler_kubeconfig: str, work: Path, case: Case
) -> None:
    """No node is ever over-committed. With the extender's tie-break kube-scheduler takes, for every pod, the node
    the extender named (and held the pod on). With kube-scheduler's, the extender holds each pod on every tied
    node. The control relays the extender's answers with equal scores: kube-scheduler then does not follow the
    extender's choice, which shows the comparison can fail."""
    kube_scheduler = peers.binary_or_skip("kube-scheduler")
    world = World(kube_api, f"ks-{uuid.uuid4().hex[:6]}")
    extender_port, relay_port = processes.free_port(), processes.free_port()
    (work / "extender.yaml").write_text(extender_options(extender_port, case.tie_break))
    (work / "kube-scheduler.yaml").write_text(scheduler_configuration(relay_port, kube_api.kubeconfig))
    extender = driver.Processes(work)
    scheduler: subprocess.Popen[bytes] | None = None
    try:
        world.build()
        deployment.wait_for(lambda: world.ready_nodes() == NODES, "the test's nodes to be Ready and untainted")
        extender.start(
            "topolvm.extender.cli", f"--config={work / 'extender.yaml'}", "--watch-nodes", "--watch-pods",
            f"--kubeconfig={scheduler_kubeconfig}", log="topolvm-scheduler",
        )  # fmt: skip
        deployment.wait_for(lambda: cached_nodes(extender_port) >= NODES, "the extender to cache the nodes")
        world.burst()  # queued before kube-scheduler starts: it then takes them back to back, as in a scale-up
        upstream = f"http://127.0.0.1:{extender_port}"
        with (
            extender_proxy.Relay(relay_port, upstream, equalize=case.equalize) as relay,
            (work / "kube-scheduler.log").open("ab") as log,
        ):
            scheduler = subprocess.Popen(
                [str(kube_scheduler), f"--config={work / 'kube-scheduler.yaml'}", "--secure-port=0", "-v=2"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=vm.die_with_parent,  # noqa: PLW1509 - the main thread
            )
            started = time.monotonic()
            chosen = wait_for_placements(world)
            elapsed = time.monotonic() - started
        per_node = collections.Counter(chosen.values())
        # claim data-i is pod p-i's only claim
        named = {claim: relay.named.get(f"{world.namespace}/p-{claim.removeprefix('data-')}") for claim in chosen}
        unnamed = sorted(claim for claim in chosen if named[claim] is None)  # its pod's last answer was a tie
        elsewhere = {claim: (named[claim], node) for claim, node in chosen.items() if named[claim] not in (None, node)}
        summary = (
            f"{len(chosen)} of {PODS} claims placed in {elapsed:.1f}s; claims per node: "
            f"{sorted(per_node.values(), reverse=True)}; prioritize answers: {relay.answers}, "
            f"{relay.tied_answers} with a tied top score; claims whose pod the extender left to a tie: "
            f"{len(unnamed)}, placed elsewhere than the extender named: {len(elsewhere)}\n{metrics(extender_port)}"
        )
        print(summary)
        over = {node: count * CLAIM_BYTES // GiB for node, count in per_node.items() if count > PER_NODE}
        if case.equalize:
            assert elsewhere, f"kube-scheduler followed scores it could not tell apart\n{summary}"
            return
        assert not over, f"over-committed nodes (GiB promised of {NODE_BYTES // GiB}): {over}\n{summary}"
        assert len(chosen) == PODS, summary
        assert set(per_node) == set(world.nodes) and set(per_node.values()) == {PER_NODE}, summary
        if case.tie_break is None:
            assert relay.answers and not relay.tied_answers and not unnamed, summary
            assert not elsewhere, f"(extender's node, kube-scheduler's) per claim: {elsewhere}\n{summary}"
        else:
            assert relay.tied_answers, f"no tie reached kube-scheduler: the case tests nothing\n{summary}"
    finally:
        if scheduler is not None:
            processes.stop_process(scheduler)
        extender.stop_all()
        world.clean()


def cached_nodes(port: int) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return 0.0  # not listening yet
    for line in text.splitlines():
        if line.startswith("topolvm_extender_cached_nodes "):
            return float(line.split()[1])
    return 0.0
