"""In-VM agent: PID 1 of the HIL VM after /sbin/hil-init has unpacked the job disk.

Shipped by ``harness.runner`` inside the job tar as ``/job/agent.py`` and run by the guest's python3 (standard
library only). It starts udev, loads device-mapper modules, finds the NVMe test disks, runs the job's command
with a timeout while copying its output to the serial console, then writes ``/job/out`` as a tar onto the
output disk (serial ``hil-out``) and powers the VM off. It never returns.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

JOB = Path("/job")
OUT = JOB / "out"
# device-mapper targets the suites use, and loop for the tests that make their own block devices.
DM_MODULES = ("dm_mod", "dm_thin_pool", "dm_snapshot", "dm_raid", "dm_flakey", "dm_mirror", "loop")
MAX_LOG_BYTES = 16 * 1024 * 1024


def log(message: str) -> None:
    print(f"hil-agent: {message}", flush=True)


def disk_by_serial(serial: str) -> Path | None:
    for block in sorted(Path("/sys/block").glob("vd*")):
        try:
            if (block / "serial").read_text().strip() == serial:
                return Path("/dev") / block.name
        except OSError:
            continue
    return None


def nvme_namespaces() -> list[str]:
    """``/dev/nvmeXn1`` ordered by controller serial (``nvme0``, ``nvme1``, ...), independent of probe order."""
    found: list[tuple[str, str]] = []
    for controller in Path("/sys/class/nvme").glob("nvme*"):
        serial = (controller / "serial").read_text().strip()
        # The disk is named after the NVMe subsystem, not the controller: a re-plugged nvme2 may carry nvme1n2.
        found.extend(
            (serial, f"/dev/{ns.name}") for ns in sorted(controller.iterdir()) if re.fullmatch(r"nvme\d+n\d+", ns.name)
        )
    return [device for _, device in sorted(found)]


def start_udev() -> None:
    """udev makes /dev/disk/by-id and lets lvm2 sync on device nodes as it does on a real node."""
    started = subprocess.run(["/lib/systemd/systemd-udevd", "--daemon"], check=False)
    if started.returncode != 0:
        log("systemd-udevd failed to start; lvm2 falls back to creating nodes itself")
        return
    subprocess.run(["udevadm", "trigger", "--action=add"], check=False)
    subprocess.run(["udevadm", "settle", "--timeout=30"], check=False)


def prepare() -> dict[str, str]:
    os.environ["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    start_udev()
    for module in DM_MODULES:
        subprocess.run(["modprobe", module], check=False)
    nvme = nvme_namespaces()
    env = {
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "PATH": os.environ["PATH"],
        "PYTHONPATH": f"{JOB / 'src'}:/opt/topolvm-py/site",
        "PYTHONDONTWRITEBYTECODE": "1",
        "TOPOLVM_DM": "1",
        "TOPOLVM_HIL_GUEST": "1",
        "TOPOLVM_HIL_OUT": str(OUT),
        "TOPOLVM_TEST_PVS": ",".join(nvme),
    }
    return env


def run_command(job: dict[str, object], env: dict[str, str]) -> dict[str, object]:
    argv = [str(a) for a in job["argv"]]  # type: ignore[attr-defined]
    extra_env = {str(k): str(v) for k, v in job.get("env", {}).items()}  # type: ignore[attr-defined]
    timeout = float(job.get("timeout", 600))  # type: ignore[arg-type]
    cwd = JOB / str(job.get("cwd", "src"))
    log(f"running {argv} in {cwd} (timeout {timeout:.0f}s)")
    started = time.monotonic()
    timed_out = False
    written = 0
    with (OUT / "output.log").open("wb") as output:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**env, **extra_env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert process.stdout is not None
        deadline = started + timeout

        def on_alarm(_signum: int, _frame: object) -> None:
            nonlocal timed_out
            timed_out = True
            os.killpg(process.pid, signal.SIGKILL)

        signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, max(deadline - time.monotonic(), 0.1))
        for line in iter(process.stdout.readline, b""):
            sys.stdout.buffer.write(line)
            sys.stdout.flush()
            if written < MAX_LOG_BYTES:
                output.write(line)
                written += len(line)
        exit_code = process.wait()
        signal.setitimer(signal.ITIMER_REAL, 0)
    return {"exit_code": exit_code, "timed_out": timed_out, "command_seconds": round(time.monotonic() - started, 2)}


def write_results(result: dict[str, object]) -> None:
    (OUT / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    device = disk_by_serial("hil-out")
    if device is None:
        log("no output disk (serial hil-out); results are only on the console")
        print(json.dumps(result), flush=True)
        return
    with device.open("wb") as raw, tarfile.open(fileobj=raw, mode="w") as archive:
        archive.add(OUT, arcname=".")
    os.sync()


def power_off() -> None:
    os.sync()
    Path("/proc/sysrq-trigger").write_text("o")
    time.sleep(30)  # power-off is asynchronous; if it never comes, exiting PID 1 panics and qemu exits


def main() -> None:
    boot_seconds = time.clock_gettime(time.CLOCK_BOOTTIME)
    OUT.mkdir(parents=True, exist_ok=True)
    result: dict[str, object] = {"boot_seconds": round(boot_seconds, 2), "kernel": os.uname().release}
    try:
        job = json.loads((JOB / "job.json").read_text())
        env = prepare()
        result["nvme"] = env["TOPOLVM_TEST_PVS"]
        result["prepare_seconds"] = round(time.clock_gettime(time.CLOCK_BOOTTIME) - boot_seconds, 2)
        result.update(run_command(job, env))
    except Exception as error:  # the VM must always report and power off
        log(f"agent error: {error!r}")
        result["agent_error"] = repr(error)
    result["uptime_seconds"] = round(time.clock_gettime(time.CLOCK_BOOTTIME), 2)
    try:
        write_results(result)
    finally:
        log(f"done: {json.dumps(result)}")
        power_off()


if __name__ == "__main__":
    main()
