"""Boot the HIL VM under qemu (software emulation), wait for it to power off, and always clean up.

Called by ``harness.runner``. One call is one boot: a throw-away qcow2 overlay on the cached root image (the
base is never written), a read-only job disk, an output disk and ``nvme_disks`` emulated NVMe disks. The only
host-guest channels are those disk images and the serial console, which is written to ``console.log`` in the
run directory. qemu is killed on timeout, on any exception and, via PR_SET_PDEATHSIG, if this process dies.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from harness import image


def qemu_binary() -> str:
    """``$TOPOLVM_QEMU`` or qemu-system-x86_64 from PATH."""
    return os.environ.get("TOPOLVM_QEMU", "qemu-system-x86_64")


_PR_SET_PDEATHSIG = 1


@dataclasses.dataclass(frozen=True)
class VmConfig:
    """Shape of the VM. Defaults match the measurements in docs/harness.md."""

    memory_mib: int = 2048
    cpus: int = 2
    nvme_disks: int = 4
    # 1 GiB like the loop PVs of tests/support/loopvg.py, which uses these disks as its PVs in the VM.
    nvme_bytes: int = 1024**3  # sparse: costs only what the guest writes
    timeout_s: float = 900.0
    kernel_args: tuple[str, ...] = ()
    # No AVX/AVX2/SHA-NI: qemu 7.2 emulates them slowly (Go hashes and copies with them when offered): `ctr image
    # import` of a 65 MB image took 20 s with them and 12.7 s without (2026-12-06, harness/node_profile.py).
    cpu: str = "max,-avx,-avx2,-sha-ni"


@dataclasses.dataclass(frozen=True)
class Disks:
    """The per-run disk images, all inside the run directory."""

    job: Path  # a tar archive, attached raw and read-only (serial hil-job)
    out: Path  # zero-filled, the guest writes a tar onto it (serial hil-out)
    # More read-only raw disks, by serial (e.g. the HIL node profile, harness/node_profile.py).
    extra: tuple[tuple[str, Path], ...] = ()


@dataclasses.dataclass(frozen=True)
class VmOutcome:
    """How the qemu process ended."""

    returncode: int | None  # None when it had to be killed
    timed_out: bool
    seconds: float
    console: Path
    qemu_log: Path


def prerequisites() -> list[str]:
    """Reasons the VM cannot boot on this machine (empty when it can, given an image)."""
    return [
        f"{tool} not found (apt-get install qemu-system-x86 qemu-utils)"
        for tool in (qemu_binary(), "qemu-img")
        if shutil.which(tool) is None
    ]


def argv(config: VmConfig, base: image.Image, run_dir: Path, disks: Disks) -> list[str]:
    """The qemu command line. Device order fixes virtio names: root, job, out; NVMe by serial nvme0.."""
    kernel_args = [
        "console=ttyS0",
        "root=LABEL=hil-root",
        "rw",
        "init=/sbin/hil-init",
        "panic=1",
        "loglevel=4",
        "printk.time=1",
        "mitigations=off",
        *config.kernel_args,
    ]
    args = [
        qemu_binary(),
        "-nodefaults",
        "-no-user-config",
        "-machine",
        "q35",
        "-accel",
        "tcg",
        "-cpu",
        config.cpu,
        "-smp",
        str(config.cpus),
        "-m",
        str(config.memory_mib),
        "-display",
        "none",
        "-no-reboot",
        "-kernel",
        str(base.kernel),
        "-initrd",
        str(base.initrd),
        "-append",
        " ".join(kernel_args),
        "-chardev",
        f"file,id=console,path={run_dir / 'console.log'}",
        "-serial",
        "chardev:console",
        "-drive",
        f"file={run_dir / 'root.qcow2'},if=none,id=root,format=qcow2,cache=unsafe",
        "-device",
        "virtio-blk-pci,drive=root,serial=hil-root",
        "-drive",
        f"file={disks.job},if=none,id=job,format=raw,readonly=on",
        "-device",
        "virtio-blk-pci,drive=job,serial=hil-job",
        "-drive",
        f"file={disks.out},if=none,id=out,format=raw",
        "-device",
        "virtio-blk-pci,drive=out,serial=hil-out",
    ]
    for index, (serial, path) in enumerate(disks.extra):
        args += [
            "-drive",
            f"file={path},if=none,id=x{index},format=raw,readonly=on",
            "-device",
            f"virtio-blk-pci,drive=x{index},serial={serial}",
        ]
    for index in range(config.nvme_disks):
        args += [
            "-drive",
            f"file={run_dir / f'nvme{index}.img'},if=none,id=n{index},format=raw,cache=unsafe",
            "-device",
            f"nvme,serial=nvme{index},drive=n{index}",
        ]
    return args


def die_with_parent() -> None:
    """preexec_fn: the child (qemu, a test's server) gets SIGKILL when the process that started it dies. Only from
    the main thread: PDEATHSIG fires when the spawning *thread* exits."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _prepare_disks(config: VmConfig, base: image.Image, run_dir: Path) -> None:
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(base.root), str(run_dir / "root.qcow2")],
        check=True,
        capture_output=True,
    )
    for index in range(config.nvme_disks):
        with (run_dir / f"nvme{index}.img").open("wb") as handle:
            handle.truncate(config.nvme_bytes)


def _remove_scratch(config: VmConfig, run_dir: Path) -> None:
    """The overlay and NVMe images are scratch; logs and results stay in the run directory."""
    for name in ["root.qcow2", *(f"nvme{i}.img" for i in range(config.nvme_disks))]:
        (run_dir / name).unlink(missing_ok=True)


def boot(config: VmConfig, base: image.Image, run_dir: Path, disks: Disks) -> VmOutcome:
    """Boot once and wait until the guest powers off or ``config.timeout_s`` passes; qemu never outlives it."""
    problems = prerequisites()
    if problems:
        raise RuntimeError("cannot start the HIL VM: " + "; ".join(problems))
    _prepare_disks(config, base, run_dir)
    command = argv(config, base, run_dir, disks)
    (run_dir / "qemu.argv").write_text("\n".join(command) + "\n")
    qemu_log = run_dir / "qemu.log"
    started = time.monotonic()
    timed_out = False
    returncode: int | None = None
    try:
        with qemu_log.open("wb") as log_handle:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - only calls prctl
            )
            try:
                returncode = process.wait(timeout=config.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
    finally:
        _remove_scratch(config, run_dir)
    return VmOutcome(
        returncode=returncode,
        timed_out=timed_out,
        seconds=time.monotonic() - started,
        console=run_dir / "console.log",
        qemu_log=qemu_log,
    )
