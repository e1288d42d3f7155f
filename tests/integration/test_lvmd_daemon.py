"""The ``topolvm-lvmd`` daemon, started from its CLI with an upstream-format lvmd.yaml on a real loop-device VG,
answers create/list/remove/watch over its socket and shuts down cleanly on SIGTERM."""

from __future__ import annotations

import os
import queue
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support import loopvg
from topolvm import errors
from topolvm.core import model
from topolvm.lvmd import client as lvmd_client

pytestmark = pytest.mark.root
GiB = 1 << 30
MiB = 1 << 20


def wait_for_socket(path: Path, proc: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_socket():
            return
        if proc.poll() is not None:
            raise AssertionError(f"lvmd exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.05)
    raise AssertionError("lvmd did not create its socket")


def test_lvmd_daemon_serves_an_upstream_config(tmp_path: Path) -> None:
    sock_dir = Path(tempfile.mkdtemp(prefix="tlvmd-", dir="/tmp"))
    sock = sock_dir / "lvmd.sock"
    with loopvg.loop_vg(tmp_path, (GiB, GiB)) as vg:
        cfg = tmp_path / "lvmd.yaml"
        lvm_config = loopvg.lvm_config()
        cfg.write_text(
            f"socket-name: {sock}\n"
            "device-classes:\n"
            f"  - name: ssd\n    volume-group: {vg.name}\n    default: true\n    spare-gb: 1\n"
            "lvm-command-prefix: []\n" + (f"lvm-config: '{lvm_config}'\n" if lvm_config else "")
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "topolvm.lvmd.cli", "--config", str(cfg), "--refresh-interval", "0"],
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for_socket(sock, proc)
            assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
            with grpc.insecure_channel(f"unix:{sock}") as channel:
                health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
                assert health.status == health_pb2.HealthCheckResponse.SERVING
            client = lvmd_client.LvmdClient(str(sock), timeout=30)
            updates: queue.Queue[model.NodeCapacity] = queue.Queue()
            sub = client.watch(updates.put)
            first = updates.get(timeout=10).for_class("ssd")
            assert first is not None and first.free_bytes > 0
            lv = client.create_lv(name="pvc-1", device_class="ssd", size_bytes=100 * MiB, tags=["topolvm.io/owner=x"])
            assert lv.size == 100 * MiB
            assert [v.name for v in client.list_lvs(device_class="ssd")] == ["pvc-1"]
            second = updates.get(timeout=10).for_class("ssd")
            assert second is not None and second.free_bytes == first.free_bytes - 100 * MiB
            with pytest.raises(errors.InvalidArgument):
                client.create_lv(name="bad;name", device_class="ssd", size_bytes=MiB)
            client.remove_lv(name="pvc-1", device_class="ssd")
            assert client.list_lvs(device_class="ssd") == []
            sub.close()
            client.close()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for f in sock_dir.iterdir():
                f.unlink()
            sock_dir.rmdir()
    state = vg.runner.run("vgs", ["--noheadings", "-o", "vg_name", "--", vg.name], check=False)
    assert state.exit_code != 0  # the fixture removed the VG again


def test_lvmd_refuses_a_bad_config(tmp_path: Path) -> None:
    cfg = tmp_path / "lvmd.yaml"
    cfg.write_text(
        "device-classes: [{name: a, volume-group: v, default: true}, {name: b, volume-group: w, default: true}]"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "topolvm.lvmd.cli", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "more than one default device class" in proc.stderr


def test_lvmd_refuses_negative_intervals(tmp_path: Path) -> None:
    cfg = tmp_path / "lvmd.yaml"
    cfg.write_text("device-classes: [{name: a, volume-group: v, default: true}]")
    for flag in ("--max-state-age=-1", "--refresh-interval=-5"):
        proc = subprocess.run(
            [sys.executable, "-m", "topolvm.lvmd.cli", "--config", str(cfg), flag],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 2, flag
        assert "must not be negative" in proc.stderr, proc.stderr


def test_node_agent_refuses_bad_intervals(tmp_path: Path) -> None:
    """Before it reaches for lvmd or the API: a health or capacity resync interval that is negative, would
    hammer lvmd or is infinite (its thread would die at the first wait), or an orphan scan that would spin."""
    off_or_one = "must be 0 (off) or a finite number of seconds, at least 1"
    positive = "must be a positive, finite number of seconds"
    cases = {
        "--health-interval=-1": f"--health-interval {off_or_one} (got -1.0)",
        "--health-interval=0.01": f"--health-interval {off_or_one} (got 0.01)",
        "--health-interval=inf": f"--health-interval {off_or_one} (got inf)",
        "--orphan-gc-interval=0": f"--orphan-gc-interval {positive} (got 0.0)",
        "--orphan-gc-interval=nan": f"--orphan-gc-interval {positive} (got nan)",
        "--orphan-gc-interval=inf": f"--orphan-gc-interval {positive} (got inf)",
        "--capacity-resync-interval=0.5": f"--capacity-resync-interval {off_or_one} (got 0.5)",
        "--capacity-resync-interval=-3": f"--capacity-resync-interval {off_or_one} (got -3.0)",
        "--capacity-resync-interval=inf": f"--capacity-resync-interval {off_or_one} (got inf)",
    }
    for flag, message in cases.items():
        proc = subprocess.run(
            [sys.executable, "-m", "topolvm.cmd.node", f"--lvmd-socket={tmp_path / 'none.sock'}", flag],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 2, flag
        assert message in proc.stderr, (flag, proc.stderr)
