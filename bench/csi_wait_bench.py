#!/usr/bin/env python3
"""CreateVolume -> ready latency: event-driven wait (ours) vs a 1 s -> 10 s polling wait (upstream's way).

Same run, same backend: the controller service and a node agent (LogicalVolume reconciler on a work-queue
thread, lvmd service) on real lvm2 over a loop-device VG when run as root (metadata-only LVM where the host has
no device-mapper), else on the in-memory LVM. Each sample creates a volume and waits until it is ready; the two
waits alternate so both see the same machine state. Prints p50/p90 and the polling/event ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support import loopvg
from topolvm import clock, ports, runtime
from topolvm.core import model, resources
from topolvm.kube import memory as kube_memory
from topolvm.lvm import cli as lvm_cli
from topolvm.lvm import command
from topolvm.lvm import memory as lvm_memory
from topolvm.services import controller, lvmd, node

GiB = 1 << 30
MiB = 1 << 20


@contextlib.contextmanager
def backend() -> Iterator[tuple[ports.Lvm, str, str]]:
    if loopvg.can_run() is None:
        with (
            tempfile.TemporaryDirectory(prefix="tlvm-csibench-", dir="/tmp") as tmp,
            loopvg.loop_vg(Path(tmp), (8 * GiB,)) as vg,
        ):
            yield lvm_cli.LvmCli(command.Runner(config=loopvg.lvm_config())), vg.name, "real lvm2 on a loop VG"
        return
    mem = lvm_memory.InMemoryLvm()
    mem.add_vg("vg", [8 * GiB])
    yield mem, "vg", "in-memory LVM (not root)"


def poll_wait(check: Callable[[], controller.Ready | controller.Pending]) -> controller.Ready:
    """Upstream-style: sleep 1 s, check, doubling the sleep up to 10 s."""
    delay = 1.0
    while True:
        time.sleep(delay)
        state = check()
        if isinstance(state, controller.Ready):
            return state
        delay = min(delay * 2, 10.0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=10, help="volumes per wait strategy (default 10)")
    args = p.parse_args()
    with backend() as (lvm, vg, what):
        cluster = kube_memory.InMemoryCluster()
        cluster.add_node("n1")
        svc = lvmd.LvmdService(
            lvm=lvm, config=model.LvmdConfig((model.DeviceClass("ssd", vg, default=True, spare_bytes=0),))
        )
        svc.start()
        sub = svc.watch(node.CapacityPublisher(node_name="n1", cluster=cluster))
        agent = runtime.Reconciler(
            cluster, node.LogicalVolumeReconciler(node_name="n1", cluster=cluster, lvmd=svc).reconcile
        )
        agent.start()
        waiter = runtime.Waiter(cluster)
        ctl = controller.ControllerService(cluster=cluster, clock=clock.SystemClock())
        event: list[float] = []
        polled: list[float] = []
        try:
            for i in range(args.samples):
                for kind, samples in (("event", event), ("poll", polled)):
                    name = f"pvc-{kind}-{i}"
                    t = time.perf_counter()
                    ctl.create_volume(controller.VolumeRequest(name=name, required_bytes=16 * MiB, device_class="ssd"))

                    def check(name: str = name) -> controller.Ready | controller.Pending:
                        return ctl.creation_state(name)

                    if kind == "event":
                        waiter.wait(
                            lambda: s if isinstance(s := check(), controller.Ready) else None, 60, time.monotonic
                        )
                    else:
                        poll_wait(check)
                    samples.append(time.perf_counter() - t)
            for lv in cluster.list_of(resources.LOGICAL_VOLUME):
                ctl.delete_volume(lv.meta.uid)
            waiter.wait(lambda: (not cluster.list_of(resources.LOGICAL_VOLUME)) or None, 60, time.monotonic)
        finally:
            agent.stop()
            waiter.close()
            sub.close()
    e50, p50 = statistics.median(event), statistics.median(polled)
    print(f"backend: {what}; {args.samples} volumes per strategy")
    print(f"event-driven wait: p50 {e50 * 1e3:.1f} ms, max {max(event) * 1e3:.1f} ms")
    print(f"1s->10s polling:   p50 {p50 * 1e3:.1f} ms, max {max(polled) * 1e3:.1f} ms")
    print(f"ratio polling/event at p50: {p50 / e50:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
