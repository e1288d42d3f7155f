"""The server processes tests start (etcd, kube-apiserver, kube-scheduler…): a free loopback port to give one,
a start that logs to a file and ties the server to the test run's life, and a stop that always reaps."""

from __future__ import annotations

import socket
import subprocess
import threading
from pathlib import Path

from harness.vm import die_with_parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 free right now (another process may still take it before the server binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(
    argv: list[str], log: Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``argv`` started without stdin, its stdout and stderr appended to ``log``; killed when this process dies
    (``harness.vm.die_with_parent``) if started from the main thread."""
    main_thread = threading.current_thread() is threading.main_thread()
    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            # PDEATHSIG fires when the spawning *thread* exits: only safe from the main thread.
            preexec_fn=die_with_parent if main_thread else None,  # noqa: PLW1509
        )


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL if it is still running after ``timeout`` seconds; reaped either way."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
