"""Run a command, usually pytest, inside the HIL VM against the current source tree, and bring results back.

Called by tests/hil (the pytest integration) and by ``python -m harness.run``. One ``run()`` is one boot:
pack the job (source tree + agent + job.json) as a tar disk, boot, unpack the output disk into the run
directory (``<logs>/<timestamp>-<name>/``, see ``harness.cache.logs_root``), and describe what happened.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import subprocess
import tarfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from harness import cache, image, junit, vm

AGENT = Path(__file__).with_name("agent.py")
OUT_DISK_BYTES = 256 * 1024 * 1024
_SKIP_PARTS = {
    ".git",
    ".venv",
    ".hil",
    "__pycache__",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    "node_modules",
}
_NAME = re.compile(r"[^A-Za-z0-9_.-]+")
_KERNEL_LINE = re.compile(r"^\[\s*\d+\.\d+\]")


@dataclasses.dataclass(frozen=True)
class Job:
    """What to run in the VM. ``argv`` runs with cwd = the shipped source tree."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    timeout_s: float = 600.0  # in-guest command timeout; the VM's hard timeout adds boot headroom
    source: Path = cache.REPO_ROOT
    # Extra host files or directories (built tools the repository does not hold, e.g. csi-sanity), shipped as
    # /job/files/<name>; the guest finds that directory in $TOPOLVM_HIL_FILES.
    files: Mapping[str, Path] = dataclasses.field(default_factory=dict)
    # Read-only disk images attached as they are (serial -> host path), for content too large to copy into the
    # job on every boot (the HIL node profile); the guest finds them by serial in /sys/block/vd*/serial.
    drives: Mapping[str, Path] = dataclasses.field(default_factory=dict)


FILES_DIR = "/job/files"


@dataclasses.dataclass(frozen=True)
class RunResult:
    """Everything one boot produced. ``problem`` is None when the guest ran the command and reported back."""

    job: Job
    run_dir: Path
    outcome: vm.VmOutcome
    guest: Mapping[str, object]  # the agent's result.json; empty if it never arrived
    problem: str | None

    @property
    def exit_code(self) -> int | None:
        code = self.guest.get("exit_code")
        return code if isinstance(code, int) else None

    def console_tail(self, lines: int = 60, kernel_only: bool = False) -> str:
        """Last lines of the serial console; ``kernel_only`` keeps printk lines (dm, nvme, oops messages)."""
        try:
            text = self.outcome.console.read_text(errors="replace")
        except OSError:
            return "(no console log)"
        selected = [ln for ln in text.splitlines() if not kernel_only or _KERNEL_LINE.match(ln)]
        return "\n".join(selected[-lines:])

    def describe(self) -> str:
        return (
            f"{self.problem or 'ok'}; guest exit code {self.exit_code}; "
            f"vm {self.outcome.seconds:.1f}s; logs in {self.run_dir}"
        )


@dataclasses.dataclass(frozen=True)
class PytestRun:
    """A pytest job's run plus the cases from its JUnit XML (empty when the XML is missing)."""

    run: RunResult
    cases: list[junit.Case]

    @property
    def failed(self) -> list[junit.Case]:
        return [c for c in self.cases if c.outcome == "failed"]


def source_files(root: Path) -> list[Path]:
    """Files to ship, relative to ``root``: what git tracks or would track, else a filtered walk."""
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=False,
    )
    if listed.returncode == 0:
        names = [Path(n) for n in listed.stdout.decode().split("\0") if n]
    else:
        names = [p.relative_to(root) for p in root.rglob("*")]
    return sorted(
        n
        for n in names
        if not _SKIP_PARTS.intersection(n.parts)
        and (root / n).is_file()
        and not (root / n).is_symlink()
        and n.suffix != ".pyc"
    )


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = int(time.time())
    archive.addfile(info, io.BytesIO(data))


def pack_job(job: Job, path: Path) -> None:
    """Write the job disk: a tar with agent.py, job.json, src/ and files/ (the guest untars it to /job)."""
    for name, host_path in job.files.items():
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"shipped file name {name!r} must be a plain file name")
        if not host_path.exists():
            raise FileNotFoundError(f"file to ship not found: {host_path}")
    env = dict(job.env)
    if job.files:
        env.setdefault("TOPOLVM_HIL_FILES", FILES_DIR)
    spec = {"argv": list(job.argv), "env": env, "timeout": job.timeout_s, "cwd": "src"}
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as archive:
        _add_bytes(archive, "agent.py", AGENT.read_bytes(), 0o755)
        _add_bytes(archive, "job.json", json.dumps(spec).encode())
        for relative in source_files(job.source):
            archive.add(job.source / relative, arcname=f"src/{relative.as_posix()}", recursive=False)
        for name, host_path in sorted(job.files.items()):
            archive.add(host_path.resolve(), arcname=f"files/{name}")  # a link's target; mode kept


def _unpack_output(disk: Path, destination: Path) -> str | None:
    """Extract the guest's output tar; return a problem description if there is none."""
    try:
        with tarfile.open(disk, "r:") as archive:
            archive.extractall(destination, filter="data")
    except (tarfile.TarError, OSError) as error:
        return f"no results from the guest ({error})"
    return None


def new_run_dir(name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = cache.logs_root() / f"{stamp}-{_NAME.sub('_', name)[:60]}"
    run_dir, index = base, 1
    while run_dir.exists():
        run_dir, index = Path(f"{base}-{index}"), index + 1
    run_dir.mkdir(parents=True)
    return run_dir


def run(job: Job, config: vm.VmConfig | None = None) -> RunResult:
    """Boot the VM once for ``job``. Raises only if the VM cannot be started at all."""
    config = config or vm.VmConfig(timeout_s=job.timeout_s + 180)
    base = image.ensure(log=False)
    run_dir = new_run_dir(job.name)
    disks = vm.Disks(job=run_dir / "job.tar", out=run_dir / "out.img", extra=tuple(sorted(job.drives.items())))
    pack_job(job, disks.job)
    with disks.out.open("wb") as handle:
        handle.truncate(OUT_DISK_BYTES)
    outcome = vm.boot(config, base, run_dir, disks)
    out_dir = run_dir / "out"
    problem = _unpack_output(disks.out, out_dir)
    disks.out.unlink(missing_ok=True)
    disks.job.unlink(missing_ok=True)
    guest: dict[str, object] = {}
    if problem is None and (out_dir / "result.json").exists():
        guest = json.loads((out_dir / "result.json").read_text())
    if outcome.timed_out:
        problem = f"VM hard timeout after {config.timeout_s:.0f}s"
    elif guest.get("timed_out"):
        problem = f"command timed out in the guest after {job.timeout_s:.0f}s"
    elif guest.get("agent_error"):
        problem = f"guest agent error: {guest['agent_error']}"
    elif problem is None and not guest:
        problem = "the guest wrote no result.json"
    elif problem is None and outcome.returncode not in (0, None):
        problem = f"qemu exited with {outcome.returncode}: {vm_log_tail(outcome)}"
    summary = {
        "problem": problem,
        "vm_seconds": round(outcome.seconds, 1),
        "qemu_returncode": outcome.returncode,
        "vm_timed_out": outcome.timed_out,
        "argv": list(job.argv),
    }
    (run_dir / "run.json").write_text(json.dumps(summary, indent=2) + "\n")
    return RunResult(job=job, run_dir=run_dir, outcome=outcome, guest=guest, problem=problem)


def vm_log_tail(outcome: vm.VmOutcome, chars: int = 2000) -> str:
    try:
        return outcome.qemu_log.read_text(errors="replace")[-chars:].strip()
    except OSError:
        return ""


def pytest_job(
    paths: Sequence[str],
    markexpr: str | None = "dm or root",
    *,
    name: str | None = None,
    extra_args: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
    timeout_s: float = 600.0,
    source: Path = cache.REPO_ROOT,
    files: Mapping[str, Path] | None = None,
    drives: Mapping[str, Path] | None = None,
) -> Job:
    """A job running ``python3 -m pytest PATHS`` in the guest with JUnit XML collected into the run dir."""
    argv = [
        "python3",
        "-m",
        "pytest",
        *paths,
        "-p",
        "no:xdist",
        "-p",
        "no:cacheprovider",
        "-v",
        "--color=no",
        "-rfEs",
        "--junitxml=/job/out/junit.xml",
        "-o",
        "junit_family=xunit1",
        "-o",
        "junit_logging=all",
        "-o",
        "junit_log_passing_tests=false",
    ]
    if markexpr:
        argv += ["-m", markexpr]
    argv += list(extra_args)
    return Job(
        name=name or "pytest-" + "-".join(Path(p).name for p in paths),
        argv=tuple(argv),
        env=dict(env or {}),
        timeout_s=timeout_s,
        source=source,
        files=dict(files or {}),
        drives=dict(drives or {}),
    )


def run_pytest(job: Job, config: vm.VmConfig | None = None) -> PytestRun:
    result = run(job, config)
    xml = result.run_dir / "out" / "junit.xml"
    cases = junit.parse(xml) if xml.exists() else []
    return PytestRun(run=result, cases=cases)
