"""Crash safety with real processes: kill -9 at the worst moments, restart, and the request completes with
exactly one LV — no duplicate, nothing leaked (issue 4, item 10).

Real pieces: etcd + kube-apiserver (``kube_api``), ``topolvm-controller`` and ``topolvm-node`` processes, lvmd
embedded in the node agent or as its own ``topolvm-lvmd`` daemon, lvm2 on a loop-device VG (metadata only on
this host). Kill points are injected by ``tests.support.crashing``, which SIGKILLs a process right after a
chosen call returns.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.support import loopvg
from tests.support.driver import Env, GiB
from topolvm import constants

pytestmark = pytest.mark.root


@pytest.fixture
def env(kube_api: Any, tmp_path: Path) -> Iterator[Env]:
    kube_api.install_crds()
    work = Path(tempfile.mkdtemp(prefix="tlvm-crash-", dir="/tmp"))
    with loopvg.loop_vg(tmp_path, (4 * GiB,)) as vg:
        e = Env(kube_api, vg, work)
        try:
            yield e
        finally:
            e.stop_all()
            for log in sorted(work.glob("*.log")):
                print(f"--- {log.name}\n{log.read_text()[-3000:]}")
            subprocess.run(["rm", "-rf", "--", str(work)], check=False)


def test_node_agent_killed_after_lvcreate_adopts_its_lv(env: Env) -> None:
    env.controller()
    dying = env.node_agent(f"--lvmd-config={env.lvmd_yaml}", crash_after="topolvm.services.lvmd:LvmdService.create_lv")
    env.wait_for_capacity()
    with pytest.raises(grpc.RpcError):  # the agent dies before it can report; CreateVolume times out
        env.create_volume("pvc-crash-node", timeout=8)
    assert dying.wait(timeout=30) == -9
    made = env.lvs()
    assert len(made) == 1  # lvcreate did happen
    env.node_agent(f"--lvmd-config={env.lvmd_yaml}")
    vol = env.create_volume("pvc-crash-node")
    assert vol.volume_id == made[0] and env.lvs() == made  # adopted, not duplicated


def test_lvmd_killed_after_lvcreate(env: Env) -> None:
    env.controller()
    dying = env.lvmd(crash_after="topolvm.lvm.cli:LvmCli.create_lv")
    env.node_agent(f"--lvmd-socket={env.work / 'lvmd.sock'}")
    env.wait_for_capacity()
    with pytest.raises(grpc.RpcError):
        env.create_volume("pvc-crash-lvmd", timeout=8)
    assert dying.wait(timeout=30) == -9
    made = env.lvs()
    assert len(made) == 1
    env.lvmd()  # systemd restarts it; the agent's retry finds the LV already there
    vol = env.create_volume("pvc-crash-lvmd")
    assert vol.volume_id == made[0] and env.lvs() == made


def test_controller_killed_mid_create_volume(env: Env) -> None:
    dying = env.controller(crash_after="topolvm.kube.client:KubeCluster.create")
    env.node_agent(f"--lvmd-config={env.lvmd_yaml}")
    env.wait_for_capacity()
    with pytest.raises(grpc.RpcError):
        env.create_volume("pvc-crash-ctl", timeout=5)
    assert dying.wait(timeout=30) == -9
    env.controller()  # the provisioner retries CreateVolume with the same name
    vol = env.create_volume("pvc-crash-ctl")
    assert env.lvs() == [vol.volume_id]


def test_orphan_gc_reports_then_deletes_lvs_whose_logical_volume_is_gone(env: Env) -> None:
    # An LV made for a LogicalVolume that no longer exists (upstream #1104/#1213), and one TopoLVM never made.
    tags = ["--addtag", constants.MANAGED_TAG, "--addtag", constants.OWNER_TAG_PREFIX + "pvc-deleted"]
    env.vg.runner.run("lvcreate", ["-n", "0f0f0f0f-dead-4000-8000-000000000000", "-L", "8m", *tags, "-y", env.vg.name])
    env.vg.runner.run("lvcreate", ["-n", "not-topolvm", "-L", "8m", "-y", env.vg.name])
    reporter = env.node_agent(f"--lvmd-config={env.lvmd_yaml}", "--orphan-gc=report", "--orphan-gc-interval=0.2")
    env.wait_for_capacity()
    deadline = time.monotonic() + 30
    while "orphan (dry run): LV 0f0f0f0f" not in (env.work / "node.log").read_text():
        assert time.monotonic() < deadline, "no orphan report"
        time.sleep(0.1)
    assert env.lvs() == ["0f0f0f0f-dead-4000-8000-000000000000", "not-topolvm"]  # reporting removes nothing
    reporter.terminate()
    reporter.wait(timeout=15)
    env.node_agent(f"--lvmd-config={env.lvmd_yaml}", "--orphan-gc=delete", "--orphan-gc-interval=0.2")
    removed = "removed orphan LV 0f0f0f0f-dead-4000-8000-000000000000 of deleted LogicalVolume pvc-deleted"
    deadline = time.monotonic() + 30
    while removed not in (env.work / "node.log").read_text():  # logged right after the LV is gone
        assert time.monotonic() < deadline, f"orphan not collected: {env.lvs()}"
        time.sleep(0.2)
    assert env.lvs() == ["not-topolvm"]
