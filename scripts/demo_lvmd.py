#!/usr/bin/env python3
"""Demo of the main job until the simulator lands: lvmd on loop-device volume groups.

Creates three sparse 20 GiB loop devices: one VG "ssd" on the first, one VG "mirror" on the other two
(metadata-only LVM where the kernel has no device-mapper). Starts ``topolvm-lvmd`` from an upstream-format
lvmd.yaml, shows what each device class can allocate (the raid1 class gets 20 GiB, not the 40 GiB upstream would
report, #433), carves a few volumes over gRPC while the Watch stream reports capacity, then removes everything
it made. Needs root.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from rich.console import Console
from rich.table import Table

from topolvm.core import model
from topolvm.lvm import command
from topolvm.lvmd import client as lvmd_client

GiB = 1 << 30
console = Console()


def sh(argv: list[str]) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


def table(cap: model.NodeCapacity, title: str) -> Table:
    t = Table(title=title)
    for col in ("device class", "default", "size", "allocatable"):
        t.add_column(col, justify="right" if col in ("size", "allocatable") else "left")
    for s in cap.device_classes:
        t.add_row(
            s.device_class, "yes" if s.default else "", f"{s.size_bytes / GiB:.1f} GiB", f"{s.free_bytes / GiB:.2f} GiB"
        )
    return t


def show(client: lvmd_client.LvmdClient) -> None:
    """Carve volumes over gRPC while the Watch stream reports capacity; then remove them."""
    updates: queue.Queue[model.NodeCapacity] = queue.Queue()
    sub = client.watch(updates.put)
    console.print(table(updates.get(timeout=10), "capacity at start (Watch)"))
    for i, size in enumerate((5 * GiB, 8 * GiB, 3 * GiB)):
        lv = client.create_lv(name=f"pvc-demo-{i}", device_class="ssd", size_bytes=size, tags=["topolvm.io/owner=demo"])
        cap = updates.get(timeout=10)
        free = cap.device_classes[0].free_bytes / GiB
        console.print(f"created {lv.name} ({lv.size / GiB:.0f} GiB) -> ssd allocatable {free:.2f} GiB")
    try:
        client.create_lv(name="too-big", device_class="ssd", size_bytes=40 * GiB)
    except Exception as exc:  # the point of the demo: a clear refusal, nothing created
        console.print(f"[yellow]refused as expected:[/yellow] {type(exc).__name__}: {exc}")
    console.print(table(client.capacity(), "capacity after three volumes"))
    for lv in client.list_lvs(device_class="ssd"):
        client.remove_lv(name=lv.name, device_class="ssd")
    console.print(f"removed all volumes; allocatable again {client.free_bytes(device_class='ssd') / GiB:.2f} GiB")
    sub.close()
    client.close()


def main() -> int:
    if os.geteuid() != 0:
        console.print("[red]the lvmd demo needs root (loop devices and LVM)[/red]")
        return 1
    dm = "device-mapper" in Path("/proc/misc").read_text()  # /dev/mapper/control may exist without the driver
    lvm_config = "" if dm else "global { activation = 0 }"
    work = Path(tempfile.mkdtemp(prefix="topolvm-demo-"))
    suffix = uuid.uuid4().hex[:6]
    vg, mirror_vg = f"topolvm-demo-{suffix}", f"topolvm-demo-mirror-{suffix}"
    runner = command.Runner(config=lvm_config)
    loops: list[str] = []
    proc: subprocess.Popen[bytes] | None = None
    try:
        for i in range(3):
            img = work / f"disk{i}.img"
            with img.open("wb") as f:
                f.truncate(20 * GiB)
            loops.append(sh(["losetup", "--find", "--show", str(img)]))
        runner.run("pvcreate", ["-y", *loops])
        runner.run("vgcreate", ["-y", vg, loops[0]])
        runner.run("vgcreate", ["-y", mirror_vg, *loops[1:]])
        console.print(f"VG [bold]{vg}[/bold] on {loops[0]}, VG [bold]{mirror_vg}[/bold] on {', '.join(loops[1:])}")
        console.print(f"device-mapper: {'yes' if dm else 'no, LVM metadata only'}")
        sock = work / "lvmd.sock"
        cfg = work / "lvmd.yaml"
        cfg.write_text(
            f"socket-name: {sock}\n"
            "device-classes:\n"
            f"  - {{name: ssd, volume-group: {vg}, default: true, spare-gb: 2}}\n"
            f"  - {{name: mirror, volume-group: {mirror_vg}, spare-gb: 0, lvcreate-options: ['--type=raid1']}}\n"
            "lvm-command-prefix: []\n" + (f"lvm-config: '{lvm_config}'\n" if lvm_config else "")
        )
        console.print(f"starting topolvm-lvmd --config {cfg}")
        proc = subprocess.Popen([sys.executable, "-m", "topolvm.lvmd.cli", "--config", str(cfg)])
        deadline = time.monotonic() + 30
        while not sock.is_socket():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("lvmd did not start")
            time.sleep(0.05)
        show(lvmd_client.LvmdClient(str(sock)))
        return 0
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
        runner.run("vgremove", ["-ff", "-y", vg, mirror_vg], check=False)
        if loops:
            runner.run("pvremove", ["-ff", "-y", *loops], check=False)
        for dev in loops:
            subprocess.run(["losetup", "-d", dev], check=False)
        for f in work.iterdir():
            f.unlink()
        work.rmdir()


if __name__ == "__main__":
    sys.exit(main())
