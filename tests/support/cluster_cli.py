"""The end-to-end cluster (``tests.support.cluster.Cluster``) from the shell: ``up`` starts it in a session of its
own and returns when it is ready, ``down`` stops it, ``status`` reports it, ``run`` keeps it in the foreground.

    python -m tests.support.cluster_cli up --dir /tmp/e2e --nodes 3   # prints the admin kubeconfig's path
    python -m tests.support.cluster_cli down --dir /tmp/e2e
    python -m tests.support.cluster_cli up --nodes 3 --topolvm 10Gi      # TopoLVM deployed on it too (root)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.support.cluster import REPO, Cluster, ClusterError, free_port
from tests.support.stack import Stack
from topolvm import errors
from topolvm.core import quantity

STATE = "cluster.json"


def _read_state(directory: Path) -> dict[str, Any]:
    try:
        value = json.loads((directory / STATE).read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _write_state(directory: Path, **state: Any) -> None:
    tmp = directory / (STATE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(directory / STATE)


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a running ``tests.support.cluster_cli run`` (not a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return b"tests.support.cluster_cli" in cmdline and stat.rsplit(")", 1)[-1].split()[0] != "Z"


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: object) -> None:
    for other in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # the first signal stops it; no second interrupts
        signal.signal(other, signal.SIG_IGN)
    raise _Stop(signal.Signals(signum).name)


def run(directory: Path, nodes: int, extender_url: str | None, vg_bytes: int | None = None) -> int:
    """The cluster in the foreground: up, ``nodes`` kwok Nodes Ready, state in DIR/cluster.json; stopped on
    SIGTERM, SIGINT or SIGHUP. With ``vg_bytes``, TopoLVM deployed on it (tests/support/stack.py) and each Node
    given a loop-device VG of that size with its lvmd and node agent."""
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _raise_stop)
    directory.mkdir(parents=True, exist_ok=True)
    _write_state(directory, pid=os.getpid(), state="starting")
    cluster: Cluster | None = None
    topolvm: Stack | None = None
    try:
        if vg_bytes is not None and extender_url is None:
            extender_url = f"http://127.0.0.1:{free_port()}"
        cluster = Cluster(workdir=directory / "cluster", extender_url=extender_url)
        cluster.start()
        names = [f"kwok-node-{i}" for i in range(nodes)]
        if vg_bytes is not None:
            topolvm = Stack(cluster).start()
            for name in names:
                topolvm.add_node(name, (vg_bytes,))
        else:
            for name in names:
                cluster.add_node(name)
        for name in names:
            cluster.wait_node_ready(name)
        _write_state(
            directory,
            pid=os.getpid(),
            state="ready",
            kubeconfig=cluster.kubeconfig,
            url=cluster.plane.url,
            nodes=names,
            kubeconfigs=cluster.kubeconfigs,
            logs=str(cluster.workdir),
        )
        print(f"cluster ready: KUBECONFIG={cluster.kubeconfig}", flush=True)
        while True:
            time.sleep(1)
            problems = cluster.problems()
            if problems:
                raise ClusterError("; ".join(problems))
    except _Stop as stop:
        print(f"stopping on {stop}", flush=True)
        _write_state(directory, pid=os.getpid(), state="stopping")
        return 0
    except Exception as exc:
        print(f"cluster failed: {exc}", file=sys.stderr, flush=True)
        _write_state(directory, pid=os.getpid(), state="failed", error=str(exc))
        return 1
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        if topolvm is not None:
            topolvm.stop()
        if cluster is not None:
            cluster.stop()
        state = _read_state(directory)
        if state.get("state") != "failed":
            _write_state(directory, state="down")


def up(directory: Path, nodes: int, extender_url: str | None, timeout: float, vg_size: str | None = None) -> int:
    state = _read_state(directory)
    if state.get("pid") and _alive(int(state["pid"])):
        print(f"already running (pid {state['pid']}, {state.get('state')}); `down --dir {directory}` first")
        return 1
    directory.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(directory / "cluster", ignore_errors=True)
    argv = [sys.executable, "-m", "tests.support.cluster_cli", "run", "--dir", str(directory), "--nodes", str(nodes)]
    if extender_url:
        argv.append(f"--extender-url={extender_url}")
    if vg_size:
        argv.append(f"--topolvm={vg_size}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    (directory / STATE).unlink(missing_ok=True)
    with (directory / "run.log").open("ab") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env,
            start_new_session=True,  # outlives this command; its children die with it (PDEATHSIG)
        )  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = _read_state(directory)
        if state.get("state") == "ready":
            print(f"export KUBECONFIG={state['kubeconfig']}")
            print(f"# nodes: {' '.join(state['nodes'])}; logs: {state['logs']}; stop: down --dir {directory}")
            return 0
        if proc.poll() is not None:
            print(f"cluster failed: {state.get('error', 'see ' + str(directory / 'run.log'))}", file=sys.stderr)
            return 1
        time.sleep(0.5)
    print(f"not ready after {timeout:.0f}s; stopping it (log: {directory / 'run.log'})", file=sys.stderr)
    proc.terminate()
    proc.wait()
    return 1


def down(directory: Path, timeout: float = 60.0) -> int:
    state = _read_state(directory)
    pid = state.get("pid")
    if not pid or not _alive(int(pid)):
        print(f"not running ({state.get('state', 'no state')} in {directory})")
        return 0
    os.kill(int(pid), signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(int(pid)):
        if time.monotonic() > deadline:
            os.kill(int(pid), signal.SIGKILL)  # its children get SIGKILL too (PDEATHSIG)
            print(f"killed pid {pid} after {timeout:.0f}s")
            return 1
        time.sleep(0.2)
    print(f"stopped (logs in {directory})")
    return 0


def status(directory: Path) -> int:
    state = _read_state(directory)
    running = bool(state.get("pid")) and _alive(int(state["pid"]))
    print(json.dumps({**state, "running": running}, indent=2))
    return 0 if running else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.cluster_cli", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "status", "run"])
    default_dir = Path(tempfile.gettempdir()) / "topolvm-py-cluster"
    parser.add_argument("--dir", type=Path, default=default_dir, help=f"state and logs (default {default_dir})")
    parser.add_argument("--nodes", type=int, default=1, help="kwok Nodes to register (default 1)")
    parser.add_argument("--extender-url", help="kube-scheduler's extender urlPrefix (default: as deploy/ ships it)")
    parser.add_argument(
        "--topolvm",
        metavar="VG_SIZE",
        help="deploy TopoLVM too (needs root, lvm2, csi-provisioner): each Node gets a loop-device VG of this "
        "size (e.g. 10Gi) with its lvmd and node agent; the extender at a free port unless --extender-url",
    )
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds `up` waits for ready")
    args = parser.parse_args(argv)
    vg_bytes = None
    if args.topolvm:
        try:
            vg_bytes = quantity.to_bytes(args.topolvm)
        except errors.InvalidArgument as exc:
            parser.error(f"--topolvm: {exc}")
        if vg_bytes < 64 << 20:
            parser.error(f"--topolvm: {args.topolvm} is too small for a volume group (at least 64Mi)")
    if args.command == "up":
        return up(args.dir, args.nodes, args.extender_url, args.timeout, args.topolvm)
    if args.command == "down":
        return down(args.dir)
    if args.command == "status":
        return status(args.dir)
    return run(args.dir, args.nodes, args.extender_url, vg_bytes)


if __name__ == "__main__":
    sys.exit(main())
