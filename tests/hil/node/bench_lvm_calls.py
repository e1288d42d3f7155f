"""Upstream #1221 as users hit it, on the HIL node: 100 volumes mounted by pods, kubelet polling their stats
(and health) at its own cadence, and the lvm commands that costs per minute, topolvm-py's node agent and lvmd
against upstream's (hypertopolvm v0.41.0) on the same VM, the same volumes and the same kubelet.

Not a test (the file name keeps pytest from collecting it by default); bench/node_lvm_calls_bench.py runs it in
the VM with the node profile and prints the ratio. Steps:
1. TopoLVM from the chart (the suite's fixtures); PODS pods each mounting VOLUMES_PER_POD thin ext4 claims.
2. Every lvm command on the node counted for WINDOW_S: /usr/sbin/lvm (what both lvmds run, through nsenter into
   the host) is replaced by a script that logs its subcommand and execs the real binary.
3. The chart's topolvm-node and lvmd DaemonSets switched to upstream's binary with upstream's arguments, same
   manifests otherwise (upstream's lvmd.yaml is the chart's ConfigMap); once kubelet has the driver back and the
   new agents have settled, counted again for WINDOW_S.
Writes $TOPOLVM_HIL_OUT/node/lvm_calls.json.
"""

from __future__ import annotations

import collections
import copy
import json
import os
import time
from pathlib import Path
from typing import Any

from tests.hil.node.kube import Kube
from tests.hil.node.workloads import PODS, PVCS, busybox_pod, claim
from tests.support import hil_node

PODS_N = int(os.environ.get("TOPOLVM_BENCH_PODS", "10"))
VOLUMES_PER_POD = int(os.environ.get("TOPOLVM_BENCH_VOLUMES_PER_POD", "10"))
WINDOW_S = float(os.environ.get("TOPOLVM_BENCH_WINDOW", "600"))
SETTLE_S = float(os.environ.get("TOPOLVM_BENCH_SETTLE", "90"))
UPSTREAM_IMAGE = "localhost/hypertopolvm:v0.41.0"  # harness/node_profile.py
LVM = Path("/usr/sbin/lvm")
REAL_LVM = LVM.with_name("lvm.real")
CALLS = Path("/run/lvm-calls.log")
DAEMONSETS = "/apis/apps/v1/namespaces/topolvm-system/daemonsets"


class LvmCounter:
    """Every exec of /usr/sbin/lvm (and its lvs/vgs... links) logged with its subcommand while installed."""

    def __enter__(self) -> LvmCounter:
        if not REAL_LVM.exists():
            LVM.rename(REAL_LVM)
        CALLS.write_text("")
        script = f'#!/bin/bash\necho "$(basename "$0") $1" >> {CALLS}\nexec -a "$0" {REAL_LVM} "$@"\n'
        tmp = LVM.with_name("lvm.counting")
        tmp.write_text(script)
        tmp.chmod(0o755)
        tmp.rename(LVM)
        self.started = time.monotonic()
        return self

    def __exit__(self, *_exc: object) -> None:
        REAL_LVM.rename(LVM)

    def calls(self) -> collections.Counter[str]:
        return collections.Counter(line.strip() for line in CALLS.read_text().splitlines() if line.strip())


def _count(kube: Kube, label: str) -> dict[str, Any]:
    time.sleep(SETTLE_S)
    assert _all_running(kube), f"{label}: the workload pods are not all running"
    with LvmCounter() as counter:
        time.sleep(WINDOW_S)
        calls = counter.calls()
    total = sum(calls.values())
    result = {"calls": total, "per_minute": round(total * 60 / WINDOW_S, 2), "by_command": dict(calls)}
    print(f"{label}: {total} lvm commands in {WINDOW_S:.0f} s ({result['per_minute']}/min): {dict(calls)}", flush=True)
    return result


def _all_running(kube: Kube) -> bool:
    return all(kube.pod_phase(f"vols-{i}") == "Running" for i in range(PODS_N))


# What upstream's chart grants its topolvm-node beyond ours (its caches list and watch Nodes and CSIDrivers).
UPSTREAM_NODE_RULES = [
    {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch", "update", "patch"]},
    {
        "apiGroups": ["topolvm.io"],
        "resources": ["logicalvolumes", "logicalvolumes/status"],
        "verbs": ["get", "list", "watch", "create", "update", "delete", "patch"],
    },
    {"apiGroups": ["storage.k8s.io"], "resources": ["csidrivers"], "verbs": ["get", "list", "watch"]},
]


def _switch_to_upstream(kube: Kube) -> None:
    """The chart's DaemonSets, their topolvm-py containers replaced by upstream's binary and arguments, and
    topolvm-node's ServiceAccount given upstream's rules."""
    # The node imported only the chart's images: upstream's comes from the profile disk now.
    [entry] = [e for e in kube.node.profile["images"] if e["reference"] == UPSTREAM_IMAGE]
    kube.node.import_image(entry)
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    kube.create(
        f"{rbac}/clusterroles",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "bench:upstream-node"},
            "rules": UPSTREAM_NODE_RULES,
        },
    )
    kube.create(
        f"{rbac}/clusterrolebindings",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "bench:upstream-node"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "bench:upstream-node"},
            "subjects": [{"kind": "ServiceAccount", "name": "topolvm-node", "namespace": "topolvm-system"}],
        },
    )
    for name, container, argv in [
        ("topolvm-lvmd", "lvmd", ["/hypertopolvm", "lvmd", "--config=/etc/topolvm/lvmd.yaml"]),
        (
            "topolvm-node",
            "topolvm-node",
            [
                "/hypertopolvm",
                "topolvm-node",
                "--csi-socket=/var/lib/kubelet/plugins/topolvm.io/node/csi-topolvm.sock",
                "--lvmd-socket=/run/topolvm/lvmd.sock",
                "--metrics-bind-address=0",
            ],
        ),
    ]:
        found = kube.get(f"{DAEMONSETS}/{name}")
        assert found is not None, f"DaemonSet {name} not found"
        changed = copy.deepcopy(found)
        spec = changed["spec"]["template"]["spec"]
        [target] = [c for c in spec["containers"] if c["name"] == container]
        target.update(image=UPSTREAM_IMAGE, command=argv, imagePullPolicy="Never")
        target.pop("args", None)
        target.pop("livenessProbe", None)  # upstream's health port is another story; not what is measured
        spec["containers"] = [c for c in spec["containers"] if c["name"] != "liveness-probe"]
        code, reply = kube.cluster.request("PUT", f"{DAEMONSETS}/{name}", changed)
        assert code == 200, f"PUT DaemonSet {name}: HTTP {code}: {reply.get('message')}"

    def upstream_ready() -> bool:
        pods = (kube.get("/api/v1/namespaces/topolvm-system/pods") or {"items": []})["items"]
        agents = [p for p in pods if p["metadata"]["name"].startswith(("topolvm-node-", "topolvm-lvmd-"))]
        return len(agents) == 2 and all(
            any(c["image"].endswith(UPSTREAM_IMAGE.rsplit("/", maxsplit=1)[-1]) for c in p["spec"]["containers"])
            and all(s.get("ready") for s in p.get("status", {}).get("containerStatuses") or [{}])
            for p in agents
        )

    kube.wait(upstream_ready, "upstream's topolvm-node and lvmd running", timeout=600)
    kube.wait(
        lambda: any(
            d["name"] == "topolvm.io"
            for d in ((kube.get(f"/apis/storage.k8s.io/v1/csinodes/{hil_node.NODE_NAME}") or {}).get("spec") or {}).get(
                "drivers"
            )
            or []
        ),
        "kubelet to register upstream's node plugin",
    )


def test_lvm_calls_under_kubelet_polling(kube: Kube, topolvm: dict[str, Any]) -> None:
    started = time.monotonic()
    for i in range(PODS_N):
        names = [f"vol-{i}-{j}" for j in range(VOLUMES_PER_POD)]
        for name in names:
            kube.create(PVCS, claim(name, "topolvm-provisioner-thin", "16Mi"))
        volumes = [
            {
                "volume": {"name": f"v{j}", "persistentVolumeClaim": {"claimName": name}},
                "mounts": [{"name": f"v{j}", "mountPath": f"/data/{j}"}],
            }
            for j, name in enumerate(names)
        ]
        kube.create(PODS, busybox_pod(f"vols-{i}", "sleep 100000", volumes))
    kube.wait(lambda: _all_running(kube), f"{PODS_N} pods with {VOLUMES_PER_POD} volumes each", timeout=1800)
    provisioned_s = time.monotonic() - started
    print(f"{PODS_N * VOLUMES_PER_POD} volumes mounted in {provisioned_s:.0f} s", flush=True)

    ours = _count(kube, "topolvm-py")
    _switch_to_upstream(kube)
    upstream = _count(kube, "upstream v0.41.0")
    ratio = upstream["per_minute"] / ours["per_minute"] if ours["per_minute"] else float("inf")
    summary = {
        "volumes": PODS_N * VOLUMES_PER_POD,
        "window_s": WINDOW_S,
        "provisioned_s": round(provisioned_s),
        "topolvm-py": ours,
        "upstream": upstream,
        "ratio_upstream_over_ours": round(ratio, 1),
    }
    out = Path(os.environ.get("TOPOLVM_HIL_OUT", "/job/out")) / "node"
    out.mkdir(parents=True, exist_ok=True)
    (out / "lvm_calls.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary), flush=True)
    assert upstream["calls"] > 0, "upstream's agents ran no lvm command: were they serving kubelet at all?"
