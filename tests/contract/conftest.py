"""Worlds the contract suites run in: every adapter of a port, against the same assertions.

``lvm_world`` yields an ``Lvm`` adapter and an empty VG of two 1 GiB PVs: the in-memory adapter, and real lvm2 on
loop devices (root; device-mapper cases only where ``TOPOLVM_DM=1``, i.e. in the HIL VM). ``lvmd_world`` yields
an ``Lvmd``: the service itself (embedded) or a gRPC client talking to it over a unix socket, on either backend.
``world`` (tests/contract/cluster_world.py) yields a ``Cluster``: in-memory, a real kube-apiserver, and the informer
cache in front of each.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import skip_without_dm
from tests.contract.cluster_world import world  # noqa: F401 (the Cluster contract's fixture)
from tests.support import loopvg
from topolvm import ports
from topolvm.core import model
from topolvm.lvm import cli as lvm_cli
from topolvm.lvm import memory
from topolvm.lvmd import client as lvmd_client
from topolvm.lvmd import server as lvmd_server
from topolvm.services import lvmd as lvmd_service

GiB = 1 << 30


@dataclass
class LvmWorld:
    kind: str
    lvm: ports.Lvm
    vg: str
    make_thin_pool: Callable[[str, int], None]
    calls: Callable[[], int]


def _memory_world() -> LvmWorld:
    mem = memory.InMemoryLvm()
    mem.add_vg("vg0", [GiB, GiB])

    def thin_pool(name: str, size: int) -> None:
        mem.create_thin_pool(vg="vg0", name=name, size=size)

    return LvmWorld("memory", mem, "vg0", thin_pool, lambda: mem.calls)


@pytest.fixture(params=["memory", pytest.param("lvm2", marks=pytest.mark.root)])
def lvm_world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LvmWorld]:
    if request.param == "memory":
        yield _memory_world()
        return
    skip_without_dm(request)
    with loopvg.loop_vg(tmp_path, (GiB, GiB)) as vg:
        runner = vg.runner

        def thin_pool(name: str, size: int) -> None:
            runner.run("lvcreate", ["-T", f"{vg.name}/{name}", "-L", f"{size}b", "-y"])

        yield LvmWorld("lvm2", lvm_cli.LvmCli(runner), vg.name, thin_pool, lambda: runner.calls)


@dataclass
class LvmdWorld:
    kind: str
    lvmd: ports.Lvmd
    backend: LvmWorld
    thin: bool  # whether the "thin" device class exists (in-memory, or real LVM with device-mapper)


SPARE_GB = 1


def lvmd_config(vg: str, thin: bool) -> model.LvmdConfig:
    classes = [model.DeviceClass(name="ssd", volume_group=vg, default=True, spare_bytes=SPARE_GB << 30)]
    if thin:
        classes.append(
            model.DeviceClass(
                name="thin",
                volume_group=vg,
                type=model.DeviceType.THIN,
                thin_pool=model.ThinPoolConfig("pool", 2.0),
            )
        )
    return model.LvmdConfig(device_classes=tuple(classes))


@pytest.fixture(
    params=[
        "embedded-memory",
        "grpc-memory",
        pytest.param("embedded-lvm2", marks=pytest.mark.root),
        pytest.param("grpc-lvm2", marks=pytest.mark.root),
    ]
)
def lvmd_world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LvmdWorld]:
    mode, backend_kind = request.param.split("-")
    with contextlib.ExitStack() as stack:
        if backend_kind == "memory":
            backend = _memory_world()
            thin = True
        else:
            skip_without_dm(request)
            vg = stack.enter_context(loopvg.loop_vg(tmp_path, (GiB, GiB)))
            runner = vg.runner

            def thin_pool(name: str, size: int) -> None:
                runner.run("lvcreate", ["-T", f"{vg.name}/{name}", "-L", f"{size}b", "-y"])

            backend = LvmWorld("lvm2", lvm_cli.LvmCli(runner), vg.name, thin_pool, lambda: runner.calls)
            thin = loopvg.dm_available()
        if thin:
            backend.make_thin_pool("pool", 256 << 20)
        service = lvmd_service.LvmdService(lvm=backend.lvm, config=lvmd_config(backend.vg, thin))
        service.start()
        lvmd: ports.Lvmd = service
        if mode == "grpc":
            sock_dir = Path(tempfile.mkdtemp(prefix="tlvm-", dir="/tmp"))
            stack.callback(shutil.rmtree, sock_dir, ignore_errors=True)
            server = lvmd_server.serve(service, str(sock_dir / "lvmd.sock"))
            stack.callback(lambda: server.stop(grace=None).wait())
            client = lvmd_client.LvmdClient(str(sock_dir / "lvmd.sock"), timeout=30)
            stack.callback(client.close)
            lvmd = client
        yield LvmdWorld(request.param, lvmd, backend, thin)
