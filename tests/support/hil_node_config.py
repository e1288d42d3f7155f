"""The HIL node's configuration files: containerd's, the bridge CNI's and kubelet's (tests/support/hil_node.py
writes them before it starts each)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

NODE_IP = "192.168.200.10"
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"
CONTAINERD_ROOT = Path("/var/lib/containerd")
POD_SUBNET = "10.88.0.0/16"
CNI_BIN = "/usr/lib/cni"  # Debian's containernetworking-plugins
# kubelet's volumeStatsAggPeriod: 15 s for the node suite (lvmd's --max-state-age matches in
# tests/hil/node/values.yaml), kubelet's default 60 s for bench/node_lvm_calls_bench.py, which measures what ships.
VOLUME_STATS_PERIOD_S = int(os.environ.get("TOPOLVM_HIL_VOLUME_STATS_PERIOD", "15"))


def containerd_config(pause_image: str) -> str:
    return f"""version = 2
root = "{CONTAINERD_ROOT}"
state = "/run/containerd"
[grpc]
  address = "{CONTAINERD_SOCKET}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause_image}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "/etc/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = false
"""


def cni_config() -> str:
    return json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "hil",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "cni0",
                    "isGateway": True,
                    "ipMasq": True,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_SUBNET}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                    },
                }
            ],
        },
        indent=2,
    )


def kubelet_config(healthz_port: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "cgroupfs",  # containerd 1.6 cannot tell kubelet (no RuntimeConfig), runc is set so too
        "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCKET}",
        "failSwapOn": False,
        "address": NODE_IP,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "readOnlyPort": 0,
        # Reachable only inside the VM: kube-apiserver's log and exec calls need no client certificate.
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "resolvConf": "",  # no DNS in the VM
        # The images live on a tmpfs and the root image is small: never evict or garbage-collect them.
        "evictionHard": {"memory.available": "32Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        # NodeGetVolumeHealth every volumeStatsAggPeriod, into the pods' status.volumeHealth. 15 s, not the default
        # 1 min: the suite's health and volume-stats waits take a quarter as long (lvmd's --max-state-age matches,
        # tests/hil/node/values.yaml).
        "featureGates": {"CSIVolumeHealth": True},
        "volumeStatsAggPeriod": f"{VOLUME_STATS_PERIOD_S}s",
    }
