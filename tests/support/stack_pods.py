"""What kubelet and a pod give deploy/'s containers, done by hand for the end-to-end stack (tests/support/stack.py):
a hostname of the pod's own (the sidecars' leader-election identity), the container arguments and ConfigMap data
of deploy/'s manifests, and kubelet's registration of the CSI plugin (NodeGetInfo, CSINode, topology labels)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import grpc

from tests.support import deployment
from tests.support.cluster import Cluster, ClusterError
from topolvm import constants
from topolvm.csi.proto import csi_pb2 as csi
from topolvm.csi.proto import csi_pb2_grpc as csi_grpc

REPO = Path(__file__).resolve().parents[2]
CSI_PROVISIONER = "csi-provisioner"


def as_host(hostname: str) -> list[str]:
    """An argv prefix: run the command in a new UTS namespace whose hostname is ``hostname`` (needs root)."""
    set_and_exec = "import os, socket, sys; socket.sethostname(sys.argv[1]); os.execv(sys.argv[2], sys.argv[2:])"
    return ["unshare", "--uts", "--", sys.executable, "-c", set_and_exec, hostname]


def sidecar_flags(name: str) -> list[str]:
    """deploy/controller.yaml's arguments of sidecar ``name``, but the socket, the HTTP endpoint and (for
    csi-provisioner) the owner-ref level, -1: there is no pod to walk up from. Leader election, capacity
    publishing and the rest as deployed."""
    (controller,) = [
        d for d in deployment.documents(REPO / "deploy" / "manifests" / "controller.yaml") if d["kind"] == "Deployment"
    ]
    (container,) = [c for c in controller["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    dropped = ("--csi-address=", "--http-endpoint=", "--capacity-ownerref-level=")
    kept = [arg for arg in container["args"] if not arg.startswith(dropped)]
    return [*kept, "--capacity-ownerref-level=-1"] if name == CSI_PROVISIONER else kept


def scheduler_options() -> str:
    """The extender's options from deploy/'s ConfigMap topolvm-scheduler-options (``listen`` is overridden)."""
    (config_map,) = [
        d for d in deployment.documents(REPO / "deploy" / "manifests" / "scheduler.yaml") if d["kind"] == "ConfigMap"
    ]
    return str(config_map["data"]["scheduler-options.yaml"])


def register_plugin(cluster: Cluster, node: str, csi_socket: Path) -> dict[str, Any]:
    """What kubelet does when node-driver-registrar announces the plugin: NodeGetInfo, then the CSINode entry
    (node ID, topology keys) and the topology segments as Node labels (plus the node-id annotation)."""
    with grpc.insecure_channel(f"unix:{csi_socket}") as channel:
        info = csi_grpc.NodeStub(channel).NodeGetInfo(csi.NodeGetInfoRequest(), timeout=10)
    segments = dict(info.accessible_topology.segments)
    patch = {
        "metadata": {
            "labels": segments,
            "annotations": {"csi.volume.kubernetes.io/nodeid": json.dumps({constants.PLUGIN_NAME: info.node_id})},
        }
    }
    code, reply = cluster.request("PATCH", f"/api/v1/nodes/{node}", patch, content_type="application/merge-patch+json")
    if code != 200:
        raise ClusterError(f"labelling Node {node}: HTTP {code}: {reply}")
    node_obj = reply
    csinode = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "CSINode",
        "metadata": {
            "name": node,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_obj["metadata"]["uid"]}],
        },
        "spec": {
            "drivers": [{"name": constants.PLUGIN_NAME, "nodeID": info.node_id, "topologyKeys": sorted(segments)}]
        },
    }
    code, reply = cluster.request("POST", "/apis/storage.k8s.io/v1/csinodes", csinode)
    if code != 201:
        raise ClusterError(f"creating CSINode {node}: HTTP {code}: {reply}")
    return reply
