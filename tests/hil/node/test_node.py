"""The HIL node itself: kubelet runs pods from the profile's images (before any TopoLVM scenario)."""

from __future__ import annotations

from tests.hil.node.kube import Kube
from tests.hil.node.workloads import busybox_pod


def test_pod_runs_and_reaches_the_api(kube: Kube) -> None:
    """A pod runs the workload image to completion on the real kubelet, and its log comes back through
    kube-apiserver (kube-apiserver -> kubelet); it gets its projected ServiceAccount token and the kubernetes
    Service's address. (That address reaching kube-apiserver through the node's DNAT rule is proven by TopoLVM's
    own pods, which use it for every API call: tests/hil/node/test_volumes.py.)"""
    script = (
        "echo hello from $(cat /etc/hostname); "
        "ls /var/run/secrets/kubernetes.io/serviceaccount/; "
        "echo service=$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT"
    )
    kube.create("/api/v1/namespaces/default/pods", busybox_pod("hello", script))
    log = kube.wait_pod_done("hello")
    assert "hello from hello" in log
    assert "token" in log and "ca.crt" in log
    assert "service=10.0.0.1:443" in log
