"""IO limits: StorageClass parameters and their validation, the io.max line, and the node service applying
them to the consuming pod's cgroup (in-memory limiter) around mounts."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from topolvm import errors
from topolvm.core import iolimits, model
from topolvm.lvm import memory as lvm_memory
from topolvm.mount import cgroup
from topolvm.mount import memory as mount_memory
from topolvm.services import lvmd, publish

GiB = 1 << 30
MiB = 1 << 20
POD = "0b7a1c52-8f3e-4d7e-9a54-3c1f7e2b9d10"
T = f"/var/lib/kubelet/pods/{POD}/volumes/kubernetes.io~csi/pvc-1/mount"
BLOCK_T = f"/var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices/publish/pvc-1/{POD}"


def test_absolute_and_per_gib_parameters() -> None:
    limits = iolimits.parse(
        {
            "topolvm.io/read-iops": "500",
            "topolvm.io/write-bytes-per-second": "10Mi",
            "topolvm.io/read-bytes-per-second-per-gib": "1M",
            "topolvm.io/device-class": "ssd",  # other parameters are not ours to judge
        }
    )
    assert limits is not None
    assert limits.resolve(GiB) == {"rbps": 1_000_000, "wbps": 10 * MiB, "riops": 500}
    # Per GiB of the volume's size, whole GiB rounded up: 2.5 GiB counts as 3.
    assert limits.resolve(5 * GiB // 2)["rbps"] == 3_000_000
    assert limits.resolve(5 * GiB // 2)["riops"] == 500
    # The canonical form goes through the volume context and parses back to the same limits.
    assert iolimits.parse(limits.parameters()) == limits
    assert limits.parameters()["topolvm.io/write-bytes-per-second"] == str(10 * MiB)


def test_no_limit_parameters_means_no_limits() -> None:
    assert iolimits.parse({"topolvm.io/device-class": "ssd", "csi.storage.k8s.io/fstype": "xfs"}) is None


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"topolvm.io/read-iops": "0"}, "topolvm.io/read-iops"),
        ({"topolvm.io/write-iops": "-5"}, "topolvm.io/write-iops"),
        ({"topolvm.io/write-iops": "1.5"}, "topolvm.io/write-iops"),
        ({"topolvm.io/write-iops": "5_000"}, "topolvm.io/write-iops"),
        ({"topolvm.io/write-iops": "1k"}, "topolvm.io/write-iops"),
        ({"topolvm.io/read-iops-per-gib": ""}, "topolvm.io/read-iops-per-gib"),
        ({"topolvm.io/read-bytes-per-second": "10Xi"}, "topolvm.io/read-bytes-per-second"),
        ({"topolvm.io/read-bytes-per-second": "0Mi"}, "topolvm.io/read-bytes-per-second"),
        ({"topolvm.io/write-bytes-per-second-per-gib": "-1Mi"}, "topolvm.io/write-bytes-per-second-per-gib"),
        ({"topolvm.io/read-iops": "99999999999999999999"}, "topolvm.io/read-iops"),
        ({"topolvm.io/write-bytes-per-second": "100m"}, "topolvm.io/write-bytes-per-second"),  # milli: a typo
        ({"topolvm.io/write-bytes-per-second": "4095"}, "topolvm.io/write-bytes-per-second"),  # below a page
        ({"topolvm.io/write-iop": "100"}, "topolvm.io/write-iop"),  # misspelt: would leave it unlimited
        ({"topolvm.io/read-iops-per-GiB": "10"}, "topolvm.io/read-iops-per-GiB"),
        ({"topolvm.io/read-bytes-per-sec": "1Mi"}, "topolvm.io/read-bytes-per-sec"),
        (
            {"topolvm.io/read-iops": "100", "topolvm.io/read-iops-per-gib": "10"},
            "topolvm.io/read-iops-per-gib",
        ),
    ],
)
def test_bad_values_are_invalid_argument_naming_the_parameter(params: dict[str, str], named: str) -> None:
    with pytest.raises(errors.InvalidArgument, match=named):
        iolimits.parse(params)


def test_io_max_line_sets_and_clears() -> None:
    line = iolimits.io_max_line(253, 4, {"wbps": 2 * MiB, "riops": 100})
    assert line == f"253:4 rbps=max wbps={2 * MiB} riops=100 wiops=max"
    assert iolimits.io_max_line(253, 4, {}) == "253:4 rbps=max wbps=max riops=max wiops=max"
    # The kernel lists only limited devices, with "max" for unlimited keys.
    text = f"8:0 rbps=max wbps=max riops=7 wiops=max\n253:4 rbps=max wbps={2 * MiB} riops=100 wiops=max\n"
    assert iolimits.read_io_max(text, 253, 4) == {"wbps": 2 * MiB, "riops": 100}
    assert iolimits.read_io_max(text, 253, 5) == {}


@pytest.mark.parametrize("uid", ["", "../etc", "a/b", "x" * 65, "pod uid", "-abc"])
def test_pod_uids_that_are_not_uids_are_refused(uid: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        iolimits.check_pod_uid(uid)


Node = tuple[publish.NodeVolumeService, lvmd.LvmdService, mount_memory.InMemoryMounter, mount_memory.InMemoryIoLimiter]


def _node(limiter: mount_memory.InMemoryIoLimiter | None) -> Node:
    lvm = lvm_memory.InMemoryLvm()
    lvm.add_vg("vg", [10 * GiB])
    svc = lvmd.LvmdService(
        lvm=lvm, config=model.LvmdConfig((model.DeviceClass("ssd", "vg", default=True, spare_bytes=0),))
    )
    svc.start()
    mounter = mount_memory.InMemoryMounter()
    cfg = publish.NodeConfig(node_name="n1")
    service = publish.NodeVolumeService(config=cfg, lvmd=svc, mounter=mounter, io_limiter=limiter)
    return service, svc, mounter, limiter or mount_memory.InMemoryIoLimiter()


@pytest.fixture
def node() -> Node:
    limiter = mount_memory.InMemoryIoLimiter()
    limiter.add_pod(POD)
    return _node(limiter)


def _ctx(**extra: str) -> dict[str, str]:
    return {"topolvm.io/write-iops": "200", "topolvm.io/read-bytes-per-second-per-gib": "1Mi", **extra}


def test_publish_limits_the_pod_then_unpublish_clears(node: Node) -> None:
    svc, lvmd_svc, mounter, limiter = node
    lv = lvmd_svc.create_lv(name="vol-1", device_class="ssd", size_bytes=3 * GiB)
    other = lvmd_svc.create_lv(name="vol-2", device_class="ssd", size_bytes=GiB)
    svc.publish(publish.PublishRequest("vol-1", T, volume_context=_ctx(**{publish.POD_UID_CONTEXT: POD})))
    assert T in mounter.mounts
    assert limiter.get_limits(pod_uid=POD, device=lv.path) == {"wiops": 200, "rbps": 3 * MiB}
    assert limiter.get_limits(pod_uid=POD, device=other.path) == {}
    svc.unpublish("vol-1", T)
    assert limiter.get_limits(pod_uid=POD, device=lv.path) == {}


def test_raw_block_target_names_the_pod_too(node: Node) -> None:
    svc, lvmd_svc, _mounter, limiter = node
    lv = lvmd_svc.create_lv(name="vol-1", device_class="ssd", size_bytes=GiB)
    ctx = _ctx(**{publish.POD_UID_CONTEXT: POD})
    svc.publish(publish.PublishRequest("vol-1", BLOCK_T, block=True, volume_context=ctx))
    assert limiter.get_limits(pod_uid=POD, device=lv.path)
    svc.unpublish("vol-1", BLOCK_T)
    assert limiter.get_limits(pod_uid=POD, device=lv.path) == {}


def test_a_failed_mount_leaves_no_limit(node: Node) -> None:
    svc, lvmd_svc, mounter, limiter = node
    lv = lvmd_svc.create_lv(name="vol-1", device_class="ssd", size_bytes=GiB)
    mounter.fail_next("mount", errors.FailedPrecondition("mount refused"))
    with pytest.raises(errors.FailedPrecondition):
        svc.publish(publish.PublishRequest("vol-1", T, volume_context=_ctx(**{publish.POD_UID_CONTEXT: POD})))
    assert limiter.get_limits(pod_uid=POD, device=lv.path) == {}


@pytest.mark.parametrize(
    ("ctx", "error", "message"),
    [
        (_ctx(), errors.FailedPrecondition, "podInfoOnMount"),
        (_ctx(**{publish.POD_UID_CONTEXT: "not/a-uid"}), errors.InvalidArgument, "not a Kubernetes UID"),
        (
            {"topolvm.io/write-iops": "lots", publish.POD_UID_CONTEXT: POD},
            errors.InvalidArgument,
            "topolvm.io/write-iops",
        ),
        (
            _ctx(**{publish.POD_UID_CONTEXT: "11111111-2222-3333-4444-555555555555"}),
            errors.Unavailable,  # kubelet makes the pod's cgroup first, normally; it retries otherwise
            "no cgroup",
        ),
    ],
)
def test_limits_that_cannot_be_applied_mount_nothing(
    node: Node, ctx: dict[str, str], error: type[Exception], message: str
) -> None:
    svc, lvmd_svc, mounter, _limiter = node
    lvmd_svc.create_lv(name="vol-1", device_class="ssd", size_bytes=GiB)
    with pytest.raises(error, match=message):
        svc.publish(publish.PublishRequest("vol-1", T, volume_context=ctx))
    assert not mounter.mounts


def test_a_node_without_the_io_controller_refuses_limited_volumes_only() -> None:
    svc, lvmd_svc, mounter, _ = _node(None)
    lvmd_svc.create_lv(name="vol-1", device_class="ssd", size_bytes=GiB)
    with pytest.raises(errors.FailedPrecondition, match="cannot apply them"):
        svc.publish(publish.PublishRequest("vol-1", T, volume_context=_ctx(**{publish.POD_UID_CONTEXT: POD})))
    assert not mounter.mounts
    svc.publish(publish.PublishRequest("vol-1", T, volume_context={publish.POD_UID_CONTEXT: POD}))
    assert T in mounter.mounts
    limiter = mount_memory.InMemoryIoLimiter(io_controller=False)
    limiter.add_pod(POD)
    svc2, lvmd2, mounter2, _ = _node(limiter)
    lvmd2.create_lv(name="vol-1", device_class="ssd", size_bytes=GiB)
    with pytest.raises(errors.FailedPrecondition, match="io controller"):
        svc2.publish(publish.PublishRequest("vol-1", T, volume_context=_ctx(**{publish.POD_UID_CONTEXT: POD})))
    assert not mounter2.mounts


def test_inline_ephemeral_volume_with_bad_limits_creates_no_lv(node: Node) -> None:
    svc, lvmd_svc, mounter, _ = node
    ctx = {
        publish.EPHEMERAL_CONTEXT: "true",
        publish.POD_UID_CONTEXT: POD,
        "topolvm.io/read-iops": "0",
    }
    with pytest.raises(errors.InvalidArgument, match=re.escape("topolvm.io/read-iops")):
        svc.publish(publish.PublishRequest("eph-1", T, volume_context=ctx))
    assert lvmd_svc.list_lvs(device_class="ssd") == []
    assert not mounter.mounts


def _a_block_device() -> str:
    for name in sorted(os.listdir("/dev")):
        path = f"/dev/{name}"
        if stat.S_ISBLK(os.stat(path).st_mode):
            return path
    pytest.fail("no block device under /dev")


def test_pod_cgroups_are_found_below_kubelets_cgroup_root(tmp_path: Path) -> None:
    """kubelet's cgroupRoot (kind: /kubelet) moves the kubepods hierarchy; a plain directory stands for cgroupfs."""
    pod = tmp_path / "kubelet" / "kubepods" / "besteffort" / f"pod{POD}"
    pod.mkdir(parents=True)
    (pod / "io.max").write_text("")
    device = _a_block_device()
    with pytest.raises(errors.Unavailable, match="kubelet-cgroup-root"):
        cgroup.CgroupIoLimiter(tmp_path).set_limits(pod_uid=POD, device=device, limits={"wiops": 5})
    cgroup.CgroupIoLimiter(tmp_path, "/kubelet").set_limits(pod_uid=POD, device=device, limits={"wiops": 5})
    dev = os.stat(device).st_rdev
    assert (pod / "io.max").read_text() == f"{os.major(dev)}:{os.minor(dev)} rbps=max wbps=max riops=max wiops=5\n"
    with pytest.raises(errors.ConfigError):
        cgroup.CgroupIoLimiter(tmp_path, "/kubelet/../..")
