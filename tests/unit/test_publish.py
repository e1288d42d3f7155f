"""Node publishing on in-memory lvmd and mounter: paths, wrong node, idempotency, ephemeral volumes, stats."""

from __future__ import annotations

import pytest

from topolvm import errors
from topolvm.clock import ManualClock
from topolvm.core import model
from topolvm.lvm import memory as lvm_memory
from topolvm.mount import memory as mount_memory
from topolvm.services import lvmd, publish

GiB = 1 << 30
MiB = 1 << 20
T = "/var/lib/kubelet/pods/p1/volumes/kubernetes.io~csi/pvc-1/mount"


@pytest.fixture
def node() -> tuple[publish.NodeVolumeService, lvmd.LvmdService, mount_memory.InMemoryMounter]:
    lvm = lvm_memory.InMemoryLvm()
    lvm.add_vg("vg", [10 * GiB])
    svc = lvmd.LvmdService(
        lvm=lvm, config=model.LvmdConfig((model.DeviceClass("ssd", "vg", default=True, spare_bytes=0),))
    )
    svc.start()
    mounter = mount_memory.InMemoryMounter()
    cfg = publish.NodeConfig(node_name="n1", ephemeral_max_bytes=2 * GiB)
    return publish.NodeVolumeService(config=cfg, lvmd=svc, mounter=mounter), svc, mounter


def test_publish_unpublish_is_idempotent(
    node: tuple[publish.NodeVolumeService, lvmd.LvmdService, mount_memory.InMemoryMounter],
) -> None:
    svc, lvmd_svc, mounter = node
    lv = lvmd_svc.create_lv(name="vol-1", device_class="ssd", size_bytes=GiB)
    req = publish.PublishRequest(volume_id="vol-1", target_path=T, fstype="xfs", mount_flags=("noatime",))
    svc.publish(req)
    svc.publish(req)
    assert mounter.mounts[T].device == lv.path and mounter.mounts[T].fstype == "xfs"
    assert svc.stats("vol-1", T).total_bytes > 0
    assert svc.health("vol-1") == ()
    svc.unpublish("vol-1", T)
    svc.unpublish("vol-1", T)
    assert T not in mounter.mounts
    assert lvmd_svc.list_lvs(device_class="ssd")  # a persistent volume stays


@pytest.mark.parametrize(
    ("req", "error"),
    [
        pytest.param(publish.PublishRequest("vol-1", "/etc/passwd"), errors.InvalidArgument, id="outside-kubelet"),
        pytest.param(
            publish.PublishRequest("vol-1", "/var/lib/kubelet/../../etc"), errors.InvalidArgument, id="dotdot"
        ),
        pytest.param(publish.PublishRequest("vol-1", "relative/path"), errors.InvalidArgument, id="relative"),
        pytest.param(publish.PublishRequest("vol-1", ""), errors.InvalidArgument, id="empty-target"),
        pytest.param(publish.PublishRequest("other-node-vol", T), errors.NotFound, id="wrong-node"),
        pytest.param(publish.PublishRequest("bad;id", T), errors.NotFound, id="malformed-id"),
        pytest.param(publish.PublishRequest("vol-1", T, fstype="ntfs"), errors.InvalidArgument, id="fstype"),
        pytest.param(publish.PublishRequest("vol-1", T, mount_flags=("ro,exec",)), errors.InvalidArgument, id="flag"),
    ],
)
def test_bad_publish_requests_mount_nothing(
    node: tuple[publish.NodeVolumeService, lvmd.LvmdService, mount_memory.InMemoryMounter],
    req: publish.PublishRequest,
    error: type[Exception],
) -> None:
    svc, lvmd_svc, mounter = node
    lvmd_svc.create_lv(name="vol-1", device_class="ssd", size_bytes=GiB)
    with pytest.raises(error):
        svc.publish(req)
    assert mounter.mounts == {}


def test_a_second_volume_on_the_same_target_is_already_exists(
    node: tuple[publish.NodeVolumeService, lvmd.LvmdService, mount_memory.InMemoryMounter],
) -> None:
    svc, lvmd_svc, _ = node
    lvmd_svc.create_lv(name="a", device_class="ssd", size_bytes=GiB)
    lvmd_svc.create_lv(name="b", device_class="ssd", size_bytes=GiB)
    svc.publish(publish.PublishRequest("a", T))
    with pytest.raises(errors.AlreadyExists):
        svc.publish(publish.PublishRequest("b", T))


def test_raw_block_and_read_only(
    node: tuple[publish.NodeVolumeService, lvmd.LvmdService, mount_memory.InMemoryMounter],
) -> None:
    svc, lvmd_svc, mounter = node
    lvmd_svc.create_lv(name="blk", device_class="ssd", size_bytes=GiB)
    svc.publish(publish.PublishRequest("blk", T, block=True, read_only=True))
    assert mounter.mounts[T].fstype == "block" and mounter.mounts[T].read_only


def test_inline_ephemeral_volume_lives_with_its_mount(
    node: tuple[publish.NodeVolumeService, lvmd.LvmdService, mount_memory.InMemoryMounter],
) -> None:
    svc, lvmd_svc, mounter = node
    ctx = {publish.EPHEMERAL_CONTEXT: "true", publish.EPHEMERAL_SIZE: "512Mi"}
    svc.publish(publish.PublishRequest("csi-0123abcd", T, volume_context=ctx))
    lvs = lvmd_svc.list_lvs(device_class="ssd")
    assert [(lv.name, lv.size) for lv in lvs] == [("csi-0123abcd", 512 * MiB)]
    assert publish.EPHEMERAL_TAG in lvs[0].tags and T in mounter.mounts
    svc.unpublish("csi-0123abcd", T)
    assert lvmd_svc.list_lvs(device_class="ssd") == []


def test_inline_ephemeral_volume_is_capped(
    node: tuple[publish.NodeVolumeService, lvmd.LvmdService, mount_memory.InMemoryMounter],
) -> None:
    svc, lvmd_svc, mounter = node
    ctx = {publish.EPHEMERAL_CONTEXT: "true", publish.EPHEMERAL_SIZE: "5Gi"}
    with pytest.raises(errors.OutOfRange):
        svc.publish(publish.PublishRequest("csi-big", T, volume_context=ctx))
    with pytest.raises(errors.InvalidArgument):
        svc.publish(publish.PublishRequest("csi-bad", T, volume_context={**ctx, publish.EPHEMERAL_SIZE: "lots"}))
    assert lvmd_svc.list_lvs(device_class="ssd") == [] and mounter.mounts == {}


def test_expand_grows_the_filesystem(
    node: tuple[publish.NodeVolumeService, lvmd.LvmdService, mount_memory.InMemoryMounter],
) -> None:
    svc, lvmd_svc, mounter = node
    lv = lvmd_svc.create_lv(name="g", device_class="ssd", size_bytes=GiB)
    mounter.sizes[lv.path] = GiB
    svc.publish(publish.PublishRequest("g", T))
    lvmd_svc.resize_lv(name="g", device_class="ssd", size_bytes=2 * GiB)
    mounter.sizes[lv.path] = 2 * GiB
    assert svc.expand("g", T, block=False) == 2 * GiB
    assert svc.stats("g", T).total_bytes == 2 * GiB
    with pytest.raises(errors.FailedPrecondition):
        svc.expand("g", "/var/lib/kubelet/elsewhere", block=False)


def test_stats_and_expand_argument_errors_follow_csi(
    node: tuple[publish.NodeVolumeService, lvmd.LvmdService, mount_memory.InMemoryMounter],
) -> None:
    """csi-sanity: a missing path is INVALID_ARGUMENT even for an unknown volume; a path the volume is not
    published at — relative, or outside the kubelet directory — is NOT_FOUND for stats."""
    svc, lvmd_svc, _ = node
    lvmd_svc.create_lv(name="s", device_class="ssd", size_bytes=GiB)
    with pytest.raises(errors.InvalidArgument):
        svc.stats("no-such-volume", "")
    with pytest.raises(errors.InvalidArgument):
        svc.expand("no-such-volume", "", block=False)
    with pytest.raises(errors.NotFound):
        svc.stats("no-such-volume", "some/path")
    for path in ("some/path", "/etc", T):
        with pytest.raises(errors.NotFound):
            svc.stats("s", path)


def test_a_failed_mount_does_not_leak_an_inline_ephemeral_lv(
    node: tuple[publish.NodeVolumeService, lvmd.LvmdService, mount_memory.InMemoryMounter],
) -> None:
    svc, lvmd_svc, _mounter = node
    lvmd_svc.create_lv(name="other", device_class="ssd", size_bytes=GiB)
    svc.publish(publish.PublishRequest("other", T))  # the target is taken
    ctx = {publish.EPHEMERAL_CONTEXT: "true", publish.EPHEMERAL_SIZE: "512Mi"}
    with pytest.raises(errors.AlreadyExists):
        svc.publish(publish.PublishRequest("csi-leak", T, volume_context=ctx))
    assert [lv.name for lv in lvmd_svc.list_lvs(device_class="ssd")] == ["other"]


def test_unpublish_leaves_another_volumes_mount_alone(
    node: tuple[publish.NodeVolumeService, lvmd.LvmdService, mount_memory.InMemoryMounter],
) -> None:
    svc, lvmd_svc, mounter = node
    lvmd_svc.create_lv(name="a", device_class="ssd", size_bytes=GiB)
    lvmd_svc.create_lv(name="b", device_class="ssd", size_bytes=GiB)
    svc.publish(publish.PublishRequest("b", T))
    with pytest.raises(errors.FailedPrecondition):
        svc.unpublish("a", T)
    assert T in mounter.mounts


def test_inline_ephemeral_caps_are_per_device_class() -> None:
    lvm = lvm_memory.InMemoryLvm()
    lvm.add_vg("vg", [10 * GiB])
    lvm.add_vg("vg2", [10 * GiB])
    classes = (
        model.DeviceClass("ssd", "vg", default=True, spare_bytes=0),
        model.DeviceClass("scratch", "vg2", spare_bytes=0),
    )
    svc = lvmd.LvmdService(lvm=lvm, config=model.LvmdConfig(classes))
    svc.start()
    cfg = publish.NodeConfig(
        node_name="n1", ephemeral_max_bytes=GiB, ephemeral_max_bytes_by_class={"scratch": 4 * GiB, "ssd": 0}
    )
    node_svc = publish.NodeVolumeService(config=cfg, lvmd=svc, mounter=mount_memory.InMemoryMounter())
    ctx = {publish.EPHEMERAL_CONTEXT: "true", publish.EPHEMERAL_SIZE: "3Gi"}
    node_svc.publish(publish.PublishRequest("csi-a", T, volume_context={**ctx, "topolvm.io/device-class": "scratch"}))
    with pytest.raises(errors.OutOfRange, match="'ssd'"):  # the default class is closed to inline volumes
        node_svc.publish(
            publish.PublishRequest("csi-b", T + "2", volume_context={**ctx, "topolvm.io/device-class": "ssd"})
        )
    assert [lv.name for lv in svc.list_lvs(device_class="scratch")] == ["csi-a"]


@pytest.mark.parametrize(
    ("step", "block", "ephemeral"),
    [
        pytest.param("mkfs", False, False, id="mkfs-fails"),
        pytest.param("mount", False, False, id="mount-fails"),
        pytest.param("mount", True, False, id="block-bind-fails"),
        pytest.param("mkfs", False, True, id="ephemeral-mkfs-fails"),
    ],
)
@pytest.mark.parametrize("kubelet_made_it", [False, True], ids=["target-created-here", "target-existed"])
def test_a_failed_publish_leaves_nothing_it_created(
    node: tuple[publish.NodeVolumeService, lvmd.LvmdService, mount_memory.InMemoryMounter],
    step: mount_memory.Step,
    block: bool,
    ephemeral: bool,
    kubelet_made_it: bool,
) -> None:
    """kubelet may never call NodeUnpublish after a failed NodePublish: no mount, no target directory (unless it
    was there before), no inline ephemeral LV remain; a retry then succeeds."""
    svc, lvmd_svc, mounter = node
    context = {publish.EPHEMERAL_CONTEXT: "true"} if ephemeral else {}
    if not ephemeral:
        lvmd_svc.create_lv(name="vol-1", device_class="ssd", size_bytes=GiB)
    if kubelet_made_it:
        mounter.paths.add(T)
    req = publish.PublishRequest("vol-1", T, block=block, fstype="ext4", volume_context=context)
    mounter.fail_next(step, errors.CommandError([step], 1, "injected"))
    with pytest.raises(errors.CommandError, match="injected"):
        svc.publish(req)
    assert mounter.mounts == {}
    assert (T in mounter.paths) is kubelet_made_it
    assert [lv.name for lv in lvmd_svc.list_lvs(device_class="ssd")] == ([] if ephemeral else ["vol-1"])
    svc.publish(req)
    assert T in mounter.mounts and T in mounter.paths


def test_health_sweep_tells_each_change_once_with_kubelets_probes() -> None:
    """``sweep_health`` (topolvm-node's own timer) and ``health`` (kubelet's probe) share one record: a change
    is told once whichever sees it first, the unhealthy are counted by class and worst status, and a volume
    removed since is forgotten."""
    lvm = lvm_memory.InMemoryLvm()
    lvm.add_vg("vg", [GiB, GiB])
    lvm.add_vg("vg2", [GiB])
    config = model.LvmdConfig(
        (model.DeviceClass("ssd", "vg", default=True, spare_bytes=0), model.DeviceClass("hdd", "vg2", spare_bytes=0))
    )
    lvmd_svc = lvmd.LvmdService(lvm=lvm, config=config)
    lvmd_svc.start()
    told: list[tuple[str, tuple[str, ...]]] = []
    svc = publish.NodeVolumeService(
        config=publish.NodeConfig(node_name="n1"),
        lvmd=lvmd_svc,
        mounter=mount_memory.InMemoryMounter(),
        on_health_change=lambda vid, lv, found: told.append((vid, tuple(p.reason for p in found))),
    )
    lvmd_svc.create_lv(name="on-first", device_class="ssd", size_bytes=512 * MiB)  # the first PV
    lvmd_svc.create_lv(name="other-vg", device_class="hdd", size_bytes=512 * MiB)
    assert svc.sweep_health().unhealthy == {} and told == []  # healthy from the start: nothing to say

    lvm.mark_pv_missing("vg", 0)
    lvmd_svc.refresh()
    assert svc.sweep_health().unhealthy == {("ssd", "INACCESSIBLE"): 1}
    assert told == [("on-first", ("PhysicalVolumeMissing",))]
    assert [p.reason for p in svc.health("on-first")] == ["PhysicalVolumeMissing"]  # kubelet asks: no news
    assert svc.sweep_health().unhealthy == {("ssd", "INACCESSIBLE"): 1} and len(told) == 1

    lvm.mark_pv_present("vg", 0)
    lvmd_svc.refresh()
    assert svc.health("on-first") == ()  # kubelet sees it first this time
    assert svc.sweep_health().unhealthy == {}
    assert told[1:] == [("on-first", ())]

    lvm.mark_pv_missing("vg", 0)
    lvmd_svc.refresh()
    svc.sweep_health()
    lvm.mark_pv_present("vg", 0)
    lvmd_svc.remove_lv(name="on-first", device_class="ssd")  # gone while unhealthy: nothing more to say
    assert svc.sweep_health().unhealthy == {} and told[3:] == []
    lvmd_svc.create_lv(name="on-first", device_class="ssd", size_bytes=512 * MiB)  # a new volume, same name
    assert svc.sweep_health().unhealthy == {} and told[3:] == []


def test_an_unhealthy_volume_is_told_again_before_its_event_expires() -> None:
    lvm = lvm_memory.InMemoryLvm()
    lvm.add_vg("vg", [GiB])
    lvmd_svc = lvmd.LvmdService(lvm=lvm, config=model.LvmdConfig((model.DeviceClass("ssd", "vg", default=True),)))
    lvmd_svc.start()
    clock = ManualClock()
    told: list[tuple[str, ...]] = []
    svc = publish.NodeVolumeService(
        config=publish.NodeConfig(node_name="n1"),
        lvmd=lvmd_svc,
        mounter=mount_memory.InMemoryMounter(),
        on_health_change=lambda vid, lv, found: told.append(tuple(p.reason for p in found)),
        clock=clock,
        health_reminder=3000,
    )
    lvmd_svc.create_lv(name="v", device_class="ssd", size_bytes=256 * MiB)
    lvm.mark_pv_missing("vg", 0)
    lvmd_svc.refresh()
    svc.sweep_health()
    clock.advance(2999)
    svc.sweep_health()
    assert svc.health("v") and told == [("VolumeGroupLost",)]
    clock.advance(1)  # 50 minutes on: told again (kube-apiserver drops Events after an hour)
    svc.sweep_health()
    clock.advance(60)
    svc.sweep_health()
    assert told == [("VolumeGroupLost",)] * 2
    lvm.mark_pv_present("vg", 0)
    lvmd_svc.refresh()
    svc.sweep_health()
    clock.advance(6000)
    svc.sweep_health()  # healthy: no reminders
    assert told == [("VolumeGroupLost",)] * 2 + [()]
