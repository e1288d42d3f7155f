"""The one path every lvm invocation takes.

argv lists only (never a shell), ``LC_ALL=C`` so messages can be classified, a configurable prefix (upstream
runs lvm through nsenter into PID 1's namespaces), an optional ``--config`` override, and a timeout after which
the child is killed. Each call is counted in ``topolvm_lvm_commands_total`` so idle and per-operation costs are
observable (upstream #1221).

Called only by ``topolvm.lvm.cli``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from prometheus_client import Counter, Histogram

from topolvm import errors
from topolvm.lvm import classify

log = logging.getLogger(__name__)

COMMANDS = Counter("topolvm_lvm_commands_total", "lvm commands run by this process", ["command", "outcome"])
DURATION = Histogram("topolvm_lvm_command_seconds", "Wall time of lvm commands", ["command"])


@dataclass(frozen=True)
class Result:
    stdout: str
    stderr: str
    exit_code: int


@dataclass
class Runner:
    """Runs ``lvm <subcommand> ...``; ``calls`` counts invocations of this runner (benchmarks read it)."""

    prefix: Sequence[str] = ()
    lvm_binary: str = "lvm"
    config: str = ""
    timeout: float = 120.0
    calls: int = field(default=0, init=False)

    def argv(self, subcommand: str, args: Sequence[str]) -> list[str]:
        # Upstream's lvm-command-prefix ends with the lvm binary itself (its default is nsenter ... /sbin/lvm);
        # a prefix that does not (as this project's configurations had it) gets ``lvm_binary`` appended.
        ends_with_lvm = bool(self.prefix) and os.path.basename(self.prefix[-1]) == "lvm"
        argv = [*self.prefix, subcommand] if ends_with_lvm else [*self.prefix, self.lvm_binary, subcommand]
        if self.config:
            argv += ["--config", self.config]
        return argv + list(args)

    def run(self, subcommand: str, args: Sequence[str], *, check: bool = True) -> Result:
        argv = self.argv(subcommand, args)
        env = {**os.environ, "LC_ALL": "C", "LVM_SUPPRESS_FD_WARNINGS": "1"}
        self.calls += 1
        started = time.monotonic()
        try:
            # A session of its own, so a timeout kills lvm itself even behind a prefix that forks
            # (nsenter -p forks before exec).
            proc = subprocess.Popen(
                argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
            )
        except FileNotFoundError as exc:
            COMMANDS.labels(subcommand, "missing").inc()
            raise errors.Unavailable(f"cannot run {argv[0]!r}: {exc.strerror}") from exc
        try:
            stdout, stderr = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired as exc:
            COMMANDS.labels(subcommand, "timeout").inc()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            # A process in uninterruptible I/O (a hung disk) dies only when the I/O ends: do not wait for it.
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=5)
            raise errors.Unavailable(f"{' '.join(argv)} timed out after {self.timeout:g}s (killed)") from exc
        finally:
            DURATION.labels(subcommand).observe(time.monotonic() - started)
        ok = proc.returncode == 0
        COMMANDS.labels(subcommand, "ok" if ok else "error").inc()
        log.debug("lvm %s exited %d", subcommand, proc.returncode, extra={"argv": argv})
        if check and not ok:
            raise classify.error_for(argv, proc.returncode, stderr)
        return Result(stdout, stderr, proc.returncode)
