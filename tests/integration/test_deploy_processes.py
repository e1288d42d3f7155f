"""Our real processes, each under its own ServiceAccount's token with deploy/'s RBAC (never system:masters),
do their job against a real kube-apiserver and log no refusal.

- topolvm-controller + topolvm-node (lvmd embedded, a loop-device VG): CreateVolume through the CSI socket
  makes a LogicalVolume, the node agent creates the LV and reports it, DeleteVolume removes both.
- topolvm-controller, when a Node with the topolvm.io/node finalizer is deleted: deletes that node's claims of
  TopoLVM StorageClasses, releases its LogicalVolumes and removes the finalizer; other claims and volumes stay.
- topolvm-scheduler --watch-nodes --watch-pods: learns a node's capacity from the API and filters with it.
The webhook under its ServiceAccount: tests/integration/test_deploy_webhook.py.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.integration.conftest import Deployed, deployed_env, logs_without_403, new_namespace
from tests.support import deployment, loopvg, processes
from tests.support.driver import GiB, Processes
from topolvm import constants
from topolvm.core import workloads
from topolvm.csi.proto import csi_pb2 as csi
from topolvm.csi.proto import csi_pb2_grpc as csi_grpc

SELECTED_NODE = workloads.SELECTED_NODE_ANNOTATION


@pytest.mark.root
def test_controller_and_node_provision_and_delete_under_their_service_accounts(
    deployed: Deployed, work: Path, tmp_path: Path
) -> None:
    with loopvg.loop_vg(tmp_path, (2 * GiB,)) as vg:
        env = deployed_env(deployed, vg, work)
        try:
            env.controller()
            env.node_agent(f"--lvmd-config={env.lvmd_yaml}")
            env.wait_for_capacity()  # the node agent patched its Node
            volume = env.create_volume(f"pvc-{uuid.uuid4().hex[:8]}")
            assert env.lvs() == [volume.volume_id]  # the node agent made the LV and reported it back
            with grpc.insecure_channel(f"unix:{work / 'ctl.sock'}") as channel:
                csi_grpc.ControllerStub(channel).DeleteVolume(
                    csi.DeleteVolumeRequest(volume_id=volume.volume_id), timeout=30
                )
            assert env.lvs() == []  # DeleteVolume returns once the node agent removed the LV
            code, node = deployed.plane.request("GET", f"/api/v1/nodes/{env.node}")
            assert code == 200 and constants.NODE_FINALIZER in node["metadata"]["finalizers"]
        finally:
            env.stop_all()
    logs_without_403(env.logs())


def claim(namespace: str, name: str, storage_class: str, node: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "annotations": {SELECTED_NODE: node}},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": storage_class,
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }


def logical_volume(name: str, node: str) -> dict[str, Any]:
    return {
        "apiVersion": "topolvm.io/v1",
        "kind": "LogicalVolume",
        "metadata": {"name": name, "finalizers": [constants.LOGICAL_VOLUME_FINALIZER]},
        "spec": {"name": name, "nodeName": node, "size": "1Gi", "deviceClass": "ssd"},
    }


def test_controller_cleans_up_a_deleted_node_under_its_service_account(deployed: Deployed, work: Path) -> None:
    plane, suffix = deployed.plane, uuid.uuid4().hex[:6]
    dead, alive = f"dead-{suffix}", f"alive-{suffix}"
    for node in (dead, alive):  # as their node agents registered them
        body = {"metadata": {"name": node, "finalizers": [constants.NODE_FINALIZER]}}
        code, reply = plane.request("POST", "/api/v1/nodes", body)
        assert code == 201, reply
    namespace = new_namespace(plane, f"app-{suffix}")
    code, reply = plane.request(
        "POST", "/apis/storage.k8s.io/v1/storageclasses",
        {"metadata": {"name": f"nfs-{suffix}"}, "provisioner": "nfs.csi.k8s.io"},
    )  # fmt: skip
    assert code == 201, reply
    claims = {  # name -> (StorageClass, selected node); deploy/'s classes are TopoLVM's
        "thick": ("topolvm-provisioner", dead),
        "thin": ("topolvm-provisioner-thin", dead),
        "share": (f"nfs-{suffix}", dead),
        "elsewhere": ("topolvm-provisioner", alive),
    }
    pvcs = f"/api/v1/namespaces/{namespace}/persistentvolumeclaims"
    for name, (storage_class, node) in claims.items():
        code, reply = plane.request("POST", pvcs, claim(namespace, name, storage_class, node))
        assert code == 201, reply
    volumes = {f"pvc-dead-{suffix}": dead, f"pvc-alive-{suffix}": alive}
    for name, node in volumes.items():
        code, reply = plane.request("POST", "/apis/topolvm.io/v1/logicalvolumes", logical_volume(name, node))
        assert code == 201, reply
    procs = Processes(work)
    try:
        procs.start(
            "topolvm.cmd.controller", f"--csi-socket={work / 'ctl.sock'}",
            f"--kubeconfig={deployed.kubeconfigs['topolvm-controller']}", wait_for=work / "ctl.sock",
        )  # fmt: skip
        code, reply = plane.request("DELETE", f"/api/v1/nodes/{dead}")
        assert code == 200, reply
        deployment.wait_for(lambda: plane.request("GET", f"/api/v1/nodes/{dead}")[0] == 404, "the dead Node to go")
    finally:
        procs.stop_all()
    logs_without_403(procs.logs())

    def deleted(path: str) -> bool:
        code, obj = plane.request("GET", path)
        # gone, or held by kubernetes.io/pvc-protection (no controller-manager here removes it)
        return code == 404 or (code == 200 and "deletionTimestamp" in obj["metadata"])

    assert {name: deleted(f"{pvcs}/{name}") for name in claims} == {
        "thick": True,
        "thin": True,
        "share": False,
        "elsewhere": False,
    }
    lvs = "/apis/topolvm.io/v1/logicalvolumes"
    assert plane.request("GET", f"{lvs}/pvc-dead-{suffix}")[0] == 404  # deleted, finalizer dropped
    code, kept = plane.request("GET", f"{lvs}/pvc-alive-{suffix}")
    assert code == 200 and "deletionTimestamp" not in kept["metadata"]
    assert kept["metadata"]["finalizers"] == [constants.LOGICAL_VOLUME_FINALIZER]
    code, node = plane.request("GET", f"/api/v1/nodes/{alive}")
    assert code == 200 and node["metadata"]["finalizers"] == [constants.NODE_FINALIZER]


def post(url: str, body: object) -> object:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(reply.read())


def test_scheduler_watches_nodes_under_its_service_account(deployed: Deployed, work: Path) -> None:
    roomy, tight = f"roomy-{uuid.uuid4().hex[:6]}", f"tight-{uuid.uuid4().hex[:6]}"
    for name, free in ((roomy, 64 * GiB), (tight, GiB)):
        annotations = {constants.capacity_annotation("ssd"): str(free)}
        code, reply = deployed.plane.request(
            "POST", "/api/v1/nodes", {"metadata": {"name": name, "annotations": annotations}}
        )
        assert code == 201, reply
    port = processes.free_port()
    procs = Processes(work)
    try:
        procs.start(
            "topolvm.extender.cli", f"--listen=127.0.0.1:{port}", "--watch-nodes", "--watch-pods",
            f"--kubeconfig={deployed.kubeconfigs['topolvm-scheduler']}", log="scheduler",
        )  # fmt: skip
        pod = {
            "metadata": {
                "name": "p",
                "namespace": "app",
                "uid": uuid.uuid4().hex,
                "annotations": {constants.capacity_annotation("ssd"): str(8 * GiB)},
            },
            "spec": {"containers": [{"name": "c"}]},
        }

        def filtered() -> object:
            try:
                # nodeCacheCapable: names only; the capacities must come from the extender's own node watch.
                reply = post(f"http://127.0.0.1:{port}/predicate", {"Pod": pod, "NodeNames": [roomy, tight]})
            except OSError:
                return None  # not listening yet
            assert isinstance(reply, dict)
            return reply if reply.get("NodeNames") == [roomy] else None

        reply = deployment.wait_for(filtered, "the extender to learn both nodes' capacity")
        assert isinstance(reply, dict)
        assert "VG free space" in {**reply["FailedNodes"], **reply["FailedAndUnresolvableNodes"]}[tight]
    finally:
        procs.stop_all()
    logs_without_403(procs.logs())
