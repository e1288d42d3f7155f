"""Request bodies for bench/extender_bench.py that change between requests as a real cluster's do.

kube-scheduler calls the extender once per verb per pod, so consecutive requests carry a *different pod* (UID,
name, requested bytes) and nearly the same Nodes, of which a few *changed* since the last cycle (a node agent
republished capacity after a volume was made or deleted; kubelet updated status). ``variants`` writes K bodies:

- variant v carries pod ``bench-v`` (its own UID) asking for 5..24 GiB of the default class;
- between variant v and v+1 exactly ``churn`` of the nodes change their capacity annotation (by 1 GiB) and
  resourceVersion, and the rest are byte-identical; the changes are chosen so that variant K-1 -> 0 also
  changes exactly that many nodes (each changed set is used twice, half a round apart, which toggles it
  back), so a run that cycles through the variants sees the same churn at every step.

So a position-by-position memo of the previous request's Nodes can reuse at most ``1 - churn`` of them; the
benchmark measures what ours actually reused. Node order stays fixed between requests: that is kube-scheduler
with percentageOfNodesToScore 100 (or a cluster below 100 nodes); by default larger clusters send a rotating
window of the nodes, which lowers any such memo's hit rate further.
"""

from __future__ import annotations

import json
import pathlib
import random
from typing import Any

GiB = 1 << 30
PREFIX = "capacity.topolvm.io/"


def node(i: int, default_gib_delta: int = 0) -> dict[str, Any]:
    """A ~2 KB Node like kube-scheduler sends (labels, annotations, conditions, addresses, nodeInfo)."""
    name = f"worker-{i:05d}"
    when = "2025-01-01T00:00:00Z"
    conditions = [
        {
            "type": t,
            "status": "False",
            "lastHeartbeatTime": when,
            "lastTransitionTime": when,
            "reason": "KubeletHasSufficient" + t,
            "message": "kubelet has sufficient " + t,
        }
        for t in ("Memory", "Disk", "PID")
    ]
    conditions.append(
        {
            "type": "Ready",
            "status": "True",
            "lastHeartbeatTime": when,
            "lastTransitionTime": when,
            "reason": "KubeletReady",
            "message": "kubelet is posting ready status",
        }
    )
    return {
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "uid": f"0b7a3c6e-0000-4000-8000-{i:012d}",
            "resourceVersion": str(100000 + i + 7 * default_gib_delta),
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "topology.topolvm.io/node": name,
                "node.kubernetes.io/instance-type": "m5.2xlarge",
            },
            "annotations": {
                PREFIX + "00default": str((((i * 37) % 200) + default_gib_delta) * GiB + 12345),
                PREFIX + "ssd": str(((i * 11) % 50) * GiB),
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": {"podCIDR": f"10.{i // 250}.{i % 250}.0/24", "providerID": f"aws:///us-east-1a/i-{i:017x}"},
        "status": {
            "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"},
            "allocatable": {"cpu": "7800m", "memory": "31Gi", "pods": "110", "ephemeral-storage": "95Gi"},
            "conditions": conditions,
            "addresses": [
                {"type": "InternalIP", "address": f"10.0.{i // 250}.{i % 250}"},
                {"type": "Hostname", "address": name},
            ],
            "nodeInfo": {
                "kernelVersion": "6.1.0-18-cloud-amd64",
                "osImage": "Debian GNU/Linux 12 (bookworm)",
                "containerRuntimeVersion": "containerd://1.7.13",
                "kubeletVersion": "v1.31.0",
                "kubeProxyVersion": "v1.31.0",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    }


def pod(v: int) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"bench-{v}",
            "namespace": "default",
            "uid": f"5d0c6a6e-1111-4000-8000-{v:012d}",
            "annotations": {PREFIX + "00default": str((5 + (v * 7) % 20) * GiB)},
        },
        "spec": {
            "containers": [{"name": "web", "resources": {"requests": {"topolvm.io/capacity": "1"}}}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": f"data-bench-{v}"}}],
        },
    }


def changed_sets(size: int, count: int, churn: float, seed: int = 1) -> list[set[int]]:
    """The nodes that change between variant s and s+1 (mod ``count``), ``round(churn * size)`` each."""
    if count % 2:
        raise ValueError("variants must be even (each change is undone half a round later)")
    per_step = round(churn * size)
    rng = random.Random(seed)
    half = [set(rng.sample(range(size), per_step)) for _ in range(count // 2)]
    return [half[s % (count // 2)] for s in range(count)]


def variants(workdir: pathlib.Path, size: int, count: int, churn: float) -> tuple[str, str, list[set[int]]]:
    """Write ``count`` full-Node and NodeNames bodies; returns their path patterns ({} = variant) and the
    changed sets."""
    encoded = [[json.dumps(node(i, delta)).encode() for delta in (0, 1)] for i in range(size)]
    names = json.dumps([f"worker-{i:05d}" for i in range(size)]).encode()
    steps = changed_sets(size, count, churn)
    toggled = [0] * size
    for v in range(count):
        pod_json = json.dumps(pod(v)).encode()
        items = b",".join(encoded[i][toggled[i]] for i in range(size))
        (workdir / f"nodes-{size}-{v}.json").write_bytes(b'{"Pod":%s,"Nodes":{"items":[%s]}}' % (pod_json, items))
        (workdir / f"names-{size}-{v}.json").write_bytes(b'{"Pod":%s,"NodeNames":%s}' % (pod_json, names))
        for i in steps[v]:
            toggled[i] ^= 1
    assert not any(toggled), "the last variant must lead back to the first"
    return str(workdir / f"nodes-{size}-{{}}.json"), str(workdir / f"names-{size}-{{}}.json"), steps
