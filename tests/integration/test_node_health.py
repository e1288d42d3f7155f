"""A disk of a VG goes missing under a volume, on real lvm2 (loop devices; metadata only on this host), with
topolvm-node and topolvm-lvmd as processes under topolvm-node's ServiceAccount and deploy/'s RBAC: without any
kubelet asking, the node agent's health sweep (``--health-interval``) logs the change, records it as an Event on
the volume's LogicalVolume and counts it in ``topolvm_volumes_unhealthy``; when the disk returns, the same in
reverse. lvmd re-reads LVM in the background once its state is older than ``--max-state-age`` (1 s here)."""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.integration.conftest import Deployed, deployed_env, logs_without_403
from tests.support import deployment, loopvg, processes
from tests.support.driver import GiB

pytestmark = pytest.mark.root


def _events(deployed: Deployed, logical_volume: str) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the Events about this LogicalVolume, oldest first."""
    code, reply = deployed.plane.request("GET", "/api/v1/namespaces/default/events")
    assert code == 200, reply
    found = [
        e
        for e in reply["items"]
        if e["involvedObject"].get("kind") == "LogicalVolume" and e["involvedObject"].get("name") == logical_volume
    ]
    return [(e["type"], e["reason"], e["message"]) for e in sorted(found, key=lambda e: e["metadata"]["name"])]


def _metric(port: int, name: str, labels: str = "") -> float | None:
    """The sample of ``name`` whose labels include ``labels`` (``key="value"``), from topolvm-node's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    match = re.search(rf"^{name}{{[^}}]*{re.escape(labels)}[^}}]*}} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


def _unhealthy(port: int, status: str) -> float | None:
    return _metric(port, "topolvm_volumes_unhealthy", f'status="{status}"')


def _swept_since(port: int, moment: float) -> bool:
    done = _metric(port, "topolvm_volume_health_sweep_last_success_timestamp_seconds")
    return done is not None and done > moment


def test_a_missing_disk_is_told_without_kubelet_asking(deployed: Deployed, work: Path, tmp_path: Path) -> None:
    with loopvg.loop_vg(tmp_path, (GiB, GiB)) as vg:
        if not all(pv.startswith("/dev/loop") for pv in vg.pvs):
            pytest.fail(f"this test detaches a loop device; the VG is on {vg.pvs}")
        env = deployed_env(deployed, vg, work)
        backing = subprocess.run(
            ["losetup", "--noheadings", "--output", "BACK-FILE", vg.pvs[0]], capture_output=True, text=True, check=True
        ).stdout.strip()
        port = processes.free_port()
        try:
            env.controller()
            env.lvmd("--max-state-age=1")
            env.node_agent(
                f"--lvmd-socket={work / 'lvmd.sock'}", "--health-interval=1", f"--metrics-address=127.0.0.1:{port}"
            )
            env.wait_for_capacity()
            name = f"pvc-{uuid.uuid4().hex[:8]}"
            volume = env.create_volume(name)  # 1 GiB over two 1 GiB PVs: it spans both
            created = time.time()
            deployment.wait_for(lambda: _swept_since(port, created), "a health sweep after the volume was made")
            assert _unhealthy(port, "INACCESSIBLE") == 0 and _events(deployed, name) == []  # healthy: nothing told

            subprocess.run(["losetup", "--detach", vg.pvs[0]], check=True)  # the disk is gone
            try:
                told = deployment.wait_for(lambda: _events(deployed, name), "an Event on the LogicalVolume")
                assert deployment.wait_for(lambda: _unhealthy(port, "INACCESSIBLE") == 1, "the unhealthy count")
            finally:
                # the disk is back, on whichever loop device is free: another worker may have taken its old one
                vg.pvs[0] = subprocess.run(
                    ["losetup", "--find", "--show", backing], capture_output=True, text=True, check=True
                ).stdout.strip()
            [(kind, reason, message)] = told
            assert (kind, reason) == ("Warning", "VolumeConditionAbnormal"), told
            assert f"volume {volume.volume_id}" in message and "INACCESSIBLE PhysicalVolumeMissing" in message

            back = deployment.wait_for(lambda: len(found := _events(deployed, name)) == 2 and found, "the recovery")
            assert [(k, r) for k, r, _ in back] == [
                ("Warning", "VolumeConditionAbnormal"),
                ("Normal", "VolumeConditionNormal"),
            ]
            assert deployment.wait_for(lambda: _unhealthy(port, "INACCESSIBLE") == 0, "the count back to 0")
            logs = (work / "node.log").read_text(errors="replace")
            assert f"volume {volume.volume_id} (LV {vg.name}/{volume.volume_id}" in logs, logs[-2000:]
            assert f"volume {volume.volume_id} is healthy again" in logs
        finally:
            env.stop_all()
    logs_without_403(env.logs())
