"""TopoLVM's node agent and lvmd restarted under a running workload: the pod keeps writing to its volume,
nothing is lost, and the node serves new volumes once the DaemonSets brought the agents back."""

from __future__ import annotations

from typing import Any

from tests.hil.node.conftest import workloads_ready
from tests.hil.node.kube import Kube
from tests.hil.node.workloads import PODS, bound_volume, busybox_pod, claim, lv_names, mounted, remove

SYSTEM_PODS = "/api/v1/namespaces/topolvm-system/pods"


def test_node_agent_and_lvmd_restarted_mid_workload(kube: Kube, topolvm: dict[str, Any]) -> None:
    kube.create("/api/v1/namespaces/default/persistentvolumeclaims", claim("busy", "topolvm-ext4", "256Mi"))
    # One line per second on the volume; stdout says how many lines the file holds.
    script = "while true; do date >> /data/log; sync; wc -l < /data/log; sleep 1; done"
    kube.create(PODS, busybox_pod("busy", script, [mounted("busy")]))

    def written() -> int:
        lines = [line for line in kube.logs("busy").split() if line.isdigit()]
        return int(lines[-1]) if lines else 0

    kube.wait(lambda: kube.pod_phase("busy") == "Running" and written() > 2, "the workload writing")
    volumes_before = lv_names()
    agents = [
        pod["metadata"]["name"]
        for pod in (kube.get(SYSTEM_PODS) or {"items": []})["items"]
        if pod["metadata"]["name"].startswith(("topolvm-node-", "topolvm-lvmd-"))
    ]
    assert len(agents) == 2, agents
    for name in agents:
        kube.delete(f"{SYSTEM_PODS}/{name}")
    for name in agents:
        kube.wait_gone(f"{SYSTEM_PODS}/{name}")
    during = written()

    def replaced() -> bool:
        pods = (kube.get(SYSTEM_PODS) or {"items": []})["items"]
        new = [
            p
            for p in pods
            if p["metadata"]["name"].startswith(("topolvm-node-", "topolvm-lvmd-"))
            and p["metadata"]["name"] not in agents
        ]
        ready = [p for p in new if all(c.get("ready") for c in p.get("status", {}).get("containerStatuses") or [{}])]
        return len(ready) == 2 and workloads_ready(kube)

    kube.wait(replaced, "new topolvm-node and lvmd pods ready", timeout=600)
    assert kube.pod_phase("busy") == "Running"
    kube.wait(lambda: written() > during + 3, "the workload still writing after the restarts")
    assert lv_names() == volumes_before
    # The restarted agents serve: a new claim is provisioned, mounted and read back on this node.
    kube.create(
        "/api/v1/namespaces/default/persistentvolumeclaims", claim("after", "topolvm-provisioner-thin", "128Mi")
    )
    kube.create(PODS, busybox_pod("after", "echo served > /data/f && cat /data/f", [mounted("after")]))
    assert kube.wait_pod_done("after").strip() == "served"
    assert bound_volume(kube, "after")["spec"]["csi"]["volumeHandle"] in lv_names()
    remove(kube, ["after"], "after")
    remove(kube, ["busy"], "busy")
