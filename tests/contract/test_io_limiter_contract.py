"""The ``IoLimiter`` port's contract: the in-memory adapter and cgroup v2 ``io.max`` (root; a hierarchy with the
io controller, which the HIL VM's kernel has and this host's does not), on pod cgroups laid out as kubelet does."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import cgroups, loopvg
from topolvm import errors, ports
from topolvm.mount import cgroup, memory

MiB = 1 << 20
POD_A = "6f1c2e3d-0a1b-4c5d-8e9f-a0b1c2d3e4f5"
POD_B = "9a8b7c6d-5e4f-4321-8fed-cba987654321"
ABSENT = "00000000-0000-4000-8000-000000000000"


@dataclass
class LimiterWorld:
    limiter: ports.IoLimiter
    devices: list[str]  # two block devices
    add_pod: Callable[[str, str, str], None]  # uid, cgroup driver, QoS class


@pytest.fixture(params=["memory", pytest.param("cgroup", marks=pytest.mark.root)])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LimiterWorld]:
    if request.param == "memory":
        mem = memory.InMemoryIoLimiter()
        yield LimiterWorld(mem, ["/dev/fake0", "/dev/fake1"], lambda uid, driver, qos: mem.add_pod(uid))
        return
    with cgroups.io_hierarchy() as root:
        if root is None:
            if loopvg.dm_available():  # the HIL VM: its kernel has the io controller, so this is a failure
                pytest.fail("no cgroup v2 hierarchy with the io controller in the HIL VM")
            pytest.skip(cgroups.IO_REASON)
        loops = []
        made: list[Path] = []
        try:
            for i in range(2):
                img = tmp_path / f"disk{i}.img"
                with img.open("wb") as f:
                    f.truncate(16 * MiB)
                dev = subprocess.run(
                    ["losetup", "--find", "--show", str(img)], capture_output=True, text=True, check=True
                )
                loops.append(dev.stdout.strip())

            def add(uid: str, driver: str, qos: str) -> None:
                made.append(cgroups.pod_cgroup(root, uid, driver=driver, qos=qos))

            yield LimiterWorld(cgroup.CgroupIoLimiter(root), loops, add)
        finally:
            for path in made:
                cgroups.remove_tree(path)
            for top in ("kubepods.slice", "kubepods"):
                cgroups.remove_tree(root / top)
            for dev in loops:
                subprocess.run(["losetup", "-d", dev], capture_output=True, check=False)


@pytest.mark.parametrize(("driver", "qos"), [("systemd", "burstable"), ("systemd", ""), ("cgroupfs", "besteffort")])
def test_limits_are_set_read_back_and_cleared(world: LimiterWorld, driver: str, qos: str) -> None:
    world.add_pod(POD_A, driver, qos)
    dev, other = world.devices
    assert world.limiter.get_limits(pod_uid=POD_A, device=dev) == {}
    world.limiter.set_limits(pod_uid=POD_A, device=dev, limits={"wbps": 4 * MiB, "riops": 250})
    assert world.limiter.get_limits(pod_uid=POD_A, device=dev) == {"wbps": 4 * MiB, "riops": 250}
    assert world.limiter.get_limits(pod_uid=POD_A, device=other) == {}
    # Setting again replaces (a key left out becomes unlimited), and is idempotent.
    for _ in range(2):
        world.limiter.set_limits(pod_uid=POD_A, device=dev, limits={"rbps": MiB})
        assert world.limiter.get_limits(pod_uid=POD_A, device=dev) == {"rbps": MiB}
    world.limiter.set_limits(pod_uid=POD_A, device=dev, limits={})
    assert world.limiter.get_limits(pod_uid=POD_A, device=dev) == {}


def test_pods_are_limited_apart(world: LimiterWorld) -> None:
    world.add_pod(POD_A, "systemd", "burstable")
    world.add_pod(POD_B, "systemd", "besteffort")
    dev = world.devices[0]
    world.limiter.set_limits(pod_uid=POD_A, device=dev, limits={"wiops": 10})
    assert world.limiter.get_limits(pod_uid=POD_B, device=dev) == {}


def test_a_pod_without_a_cgroup_is_retried_and_has_nothing_to_clear(world: LimiterWorld) -> None:
    assert world.limiter.get_limits(pod_uid=ABSENT, device=world.devices[0]) is None
    with pytest.raises(errors.Unavailable):  # kubelet has not made it yet: NodePublish is retried
        world.limiter.set_limits(pod_uid=ABSENT, device=world.devices[0], limits={"wbps": MiB})
    world.limiter.set_limits(pod_uid=ABSENT, device=world.devices[0], limits={})  # gone with the pod: fine


@pytest.mark.parametrize("uid", ["../../kubepods", "pod/a", ""])
def test_malformed_pod_uids_are_refused(world: LimiterWorld, uid: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        world.limiter.set_limits(pod_uid=uid, device=world.devices[0], limits={"wbps": MiB})
