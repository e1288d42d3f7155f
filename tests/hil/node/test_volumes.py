"""TopoLVM volumes as pods see them on the HIL node: real kubelet, real CSI calls, real LVM on emulated NVMe.

Each scenario asserts what the pod itself reads or prints (its log, through kube-apiserver and kubelet), and
what LVM holds underneath.
"""

from __future__ import annotations

import secrets
import ssl
import subprocess
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.hil.node.kube import Kube
from tests.hil.node.workloads import PODS, PVCS, VG, bound_volume, busybox_pod, claim, lv_names, mounted, remove
from tests.support import hil_node


@pytest.mark.parametrize(
    ("storage_class", "fs_type"),
    [("topolvm-provisioner", "xfs"), ("topolvm-provisioner-thin", "ext4"), ("topolvm-btrfs", "btrfs")],
)
def test_data_outlives_its_pod(kube: Kube, topolvm: dict[str, Any], storage_class: str, fs_type: str) -> None:
    """PVC + pod writes a file; the pod is deleted; a new pod on the same claim reads it back. The volume is
    the class's filesystem, an LV on the node's VG, placed on this node (the PV's node affinity)."""
    name = f"data-{fs_type}"
    mark = secrets.token_hex(8)
    kube.create(PVCS, claim(name, storage_class))
    kube.create(
        PODS,
        busybox_pod(f"{name}-writer", f"echo {mark} > /data/f && sync && grep ' /data ' /proc/mounts", [mounted(name)]),
    )
    written = kube.wait_pod_done(f"{name}-writer")
    assert f" /data {fs_type} " in written, written
    pv = bound_volume(kube, name)
    assert pv["spec"]["csi"]["driver"] == "topolvm.io"
    terms = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    assert any("hil" in expr.get("values", []) for term in terms for expr in term["matchExpressions"]), terms
    assert pv["spec"]["csi"]["volumeHandle"] in lv_names()
    kube.delete(f"{PODS}/{name}-writer")
    kube.wait_gone(f"{PODS}/{name}-writer")
    kube.create(PODS, busybox_pod(f"{name}-reader", "cat /data/f", [mounted(name)]))
    assert kube.wait_pod_done(f"{name}-reader").strip() == mark
    remove(kube, [f"{name}-reader"], name)
    assert pv["spec"]["csi"]["volumeHandle"] not in lv_names()


def test_raw_block_volume(kube: Kube, topolvm: dict[str, Any]) -> None:
    """A Block-mode claim reaches the pod as a device: bytes written to it read back raw."""
    mark = secrets.token_hex(8)
    kube.create(PVCS, claim("raw", "topolvm-provisioner-thin", "256Mi", mode="Block"))
    device = {
        "volume": {"name": "data", "persistentVolumeClaim": {"claimName": "raw"}},
        "devices": [{"name": "data", "devicePath": "/dev/xvda"}],
    }
    script = (
        f"test -b /dev/xvda && printf {mark} | dd of=/dev/xvda bs=4096 conv=sync,fsync 2>/dev/null && "
        "dd if=/dev/xvda bs=16 count=1 2>/dev/null"
    )
    kube.create(PODS, busybox_pod("raw-writer", script, [device]))
    assert kube.wait_pod_done("raw-writer").strip() == mark  # a device node in the pod, the bytes read back
    # ... and the bytes are on the claim's LV, read on the node
    handle = bound_volume(kube, "raw")["spec"]["csi"]["volumeHandle"]
    on_lv = subprocess.run(  # O_DIRECT: past the node's page cache, whole 4 KiB blocks only
        ["dd", f"if=/dev/{VG}/{handle}", "bs=4096", "count=1", "iflag=direct", "status=none"],
        capture_output=True,
        check=True,
    ).stdout
    assert on_lv[: len(mark)] == mark.encode() and not on_lv[len(mark) :].strip(b"\0")
    remove(kube, ["raw-writer"], "raw")


def test_online_expansion_seen_by_the_pod(kube: Kube, topolvm: dict[str, Any]) -> None:
    """A running pod's filesystem grows when its claim does: `df` inside the pod sees the new size, without a
    restart (ControllerExpandVolume by csi-resizer, NodeExpandVolume by kubelet)."""
    kube.create(PVCS, claim("grow", "topolvm-ext4", "512Mi"))
    script = "while true; do df -kP /data | tail -1; sleep 2; done"
    kube.create(PODS, busybox_pod("grow", script, [mounted("grow")]))

    def sizes() -> list[int]:
        return [int(line.split()[1]) for line in kube.logs("grow").splitlines() if line.strip()]

    before = kube.wait(lambda: kube.pod_phase("grow") == "Running" and sizes(), "the pod's first df")[-1]
    assert before < 512 * 1024
    kube.patch(f"{PVCS}/grow", {"spec": {"resources": {"requests": {"storage": "1Gi"}}}})
    after = kube.wait(lambda: (s := sizes()[-1]) > 900 * 1024 and s, "df in the pod to show the grown filesystem")
    assert kube.pod_phase("grow") == "Running"
    pvc = kube.wait(
        lambda: (c := kube.get(f"{PVCS}/grow")) and c["status"].get("capacity", {}).get("storage") == "1Gi" and c,
        "the claim's status capacity 1Gi",
    )
    assert pvc and after > before
    # kubelet's NodeGetVolumeStats calls surface in its own metrics (refreshed every volumeStatsAggPeriod, 15 s here)
    capacity = kube.wait(
        lambda: (
            (v := kubelet_metric("kubelet_volume_stats_capacity_bytes", persistentvolumeclaim="grow"))
            and v > 900 * 1024 * 1024
            and v
        ),
        "kubelet_volume_stats_capacity_bytes of the grown claim",
        timeout=240,
    )
    used = kubelet_metric("kubelet_volume_stats_used_bytes", persistentvolumeclaim="grow")
    assert used is not None and 0 < used < capacity
    remove(kube, ["grow"], "grow")


def kubelet_metric(name: str, **labels: str) -> float | None:
    """A sample of kubelet's /metrics (its port 10250 on the node's address; anonymous inside the VM)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(f"https://{hil_node.NODE_IP}:10250/metrics", context=context, timeout=10) as reply:
        text = reply.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def test_generic_ephemeral_volume(kube: Kube, topolvm: dict[str, Any]) -> None:
    """A generic ephemeral volume: the PVC made from the pod's template (kube-controller-manager's ephemeral
    volume controller) is provisioned on this node, mounted, and deleted with the pod, LV included."""
    template = {
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "topolvm-provisioner-thin",
            "resources": {"requests": {"storage": "256Mi"}},
        }
    }
    volume = {
        "volume": {"name": "scratch", "ephemeral": {"volumeClaimTemplate": template}},
        "mounts": [{"name": "scratch", "mountPath": "/scratch"}],
    }
    script = "echo ephemeral > /scratch/f && cat /scratch/f && grep ' /scratch ' /proc/mounts"
    kube.create(PODS, busybox_pod("eph", script, [volume]))
    log = kube.wait_pod_done("eph")
    assert log.startswith("ephemeral\n") and " /scratch ext4 " in log, log
    pv = bound_volume(kube, "eph-scratch")  # the claim's name: <pod>-<volume>
    assert pv["spec"]["csi"]["volumeHandle"] in lv_names()
    kube.delete(f"{PODS}/eph")
    kube.wait_gone(f"{PODS}/eph")
    kube.wait_gone(f"{PVCS}/eph-scratch")  # garbage-collected: the pod owned it
    kube.wait_gone(f"/api/v1/persistentvolumes/{pv['metadata']['name']}")
    assert pv["spec"]["csi"]["volumeHandle"] not in lv_names()


def test_csi_inline_ephemeral_volume(kube: Kube, topolvm: dict[str, Any]) -> None:
    """A CSI inline ephemeral volume: topolvm-node makes the LV at NodePublishVolume (size from the volume's
    attributes, tagged ephemeral) and removes it at NodeUnpublishVolume, when the pod goes."""
    before = lv_names()
    volume = {
        "volume": {
            "name": "inline",
            "csi": {"driver": "topolvm.io", "fsType": "ext4", "volumeAttributes": {"topolvm.io/size": "256Mi"}},
        },
        "mounts": [{"name": "inline", "mountPath": "/inline"}],
    }
    # The pod stays up: kubelet unpublishes the volumes of a finished pod, which removes an inline one.
    script = "echo inline > /inline/f && cat /inline/f && df -kP /inline | tail -1 && sleep 3600"
    kube.create(PODS, busybox_pod("inline", script, [volume]))
    lines = kube.wait(
        lambda: kube.pod_phase("inline") == "Running" and len(out := kube.logs("inline").splitlines()) >= 2 and out,
        "the pod's output",
    )
    assert lines[0] == "inline", lines
    assert 200 * 1024 < int(lines[1].split()[1]) <= 256 * 1024, lines  # df's size of the 256 MiB ext4
    made = lv_names() - before
    assert len(made) == 1, (before, lv_names())
    tags = subprocess.run(
        ["lvs", "--noheadings", "-o", "lv_tags", f"{VG}/{next(iter(made))}"], capture_output=True, text=True, check=True
    ).stdout
    assert "topolvm.io/ephemeral" in tags
    kube.delete(f"{PODS}/inline")
    kube.wait_gone(f"{PODS}/inline")
    kube.wait(lambda: not (made & lv_names()), "the inline volume's LV to be removed", timeout=120)
