"""What each value of the Helm chart deploy/helm/topolvm changes in its rendering, for the value sets of
tests/support/helm_chart.py and a few more; contradictory values are refused at rendering. (Each value set is
also linted and dry-run on a real kube-apiserver by tests/integration/test_helm_chart.py.)"""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import helm_chart
from tests.support.deployment import DEPLOY, NAMESPACE
from topolvm.extender import config as extender_config
from topolvm.lvmd import config as lvmd_config
from topolvm.sidecars import livenessprobe, registrar


def test_default_lvmd_values_are_deploy_lvmd_yaml() -> None:
    values = yaml.safe_load((helm_chart.CHART / "values.yaml").read_text())["lvmd"]
    shipped = yaml.safe_load((DEPLOY / "lvmd" / "lvmd.yaml").read_text())
    assert values["deviceClasses"] == shipped["device-classes"]
    assert values["lvcreateOptionClasses"] == shipped["lvcreate-option-classes"]
    assert values["socketName"] == shipped["socket-name"]


def test_scheduler_as_deployment_behind_a_service(helm: Path) -> None:
    r = helm_chart.render(helm, {"scheduler": {"type": "deployment"}})
    assert "topolvm-scheduler" not in r.names("DaemonSet")
    spec = r.one("Deployment", "topolvm-scheduler")["spec"]
    assert spec["replicas"] == 1 and "hostNetwork" not in spec["template"]["spec"]
    options = yaml.safe_load(r.one("ConfigMap", "topolvm-scheduler-options")["data"]["scheduler-options.yaml"])
    assert options["listen"] == ":9251" and options["extender-weight"] == 200
    (port,) = r.one("Service", "topolvm-scheduler")["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (9251, "extender")


def test_scheduler_options(helm: Path) -> None:
    data = helm_chart.render(helm, helm_chart.SCHEDULER_OPTIONS).one("ConfigMap", "topolvm-scheduler-options")["data"]
    options = extender_config.from_mapping(yaml.safe_load(data["scheduler-options.yaml"]))
    assert options.policy.divisors == {"ssd": 2, "hdd": 10} and options.policy.default_divisor == 1
    assert options.policy.tie_break.value == "scheduler" and options.reservation_ttl == 600


def test_capacity_tracking_only_renders_no_extender_nor_webhook(helm: Path) -> None:
    r = helm_chart.render(helm, helm_chart.CAPACITY_TRACKING_ONLY)
    assert r.names("ServiceAccount") == {"topolvm-controller", "topolvm-node"}
    assert not r.of("MutatingWebhookConfiguration") and not r.of("Certificate") and not r.of("Service")
    assert r.one("CSIDriver", "topolvm.io")["spec"]["storageCapacity"] is True


def test_self_signed_webhook_certificate(helm: Path, tmp_path: Path) -> None:
    r = helm_chart.render(helm, helm_chart.SELF_SIGNED)
    assert not r.of("Certificate") and not r.of("Issuer")
    hook = r.one("MutatingWebhookConfiguration", "topolvm-hook")
    assert "annotations" not in hook["metadata"]
    secret = r.one("Secret", "topolvm-webhook-tls")
    assert secret["type"] == "kubernetes.io/tls"
    assert hook["webhooks"][0]["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed (scripts/install-system-deps.sh installs it)")
    for name in ("ca.crt", "tls.crt"):
        (tmp_path / name).write_bytes(base64.b64decode(secret["data"][name]))
    ca, cert = str(tmp_path / "ca.crt"), str(tmp_path / "tls.crt")
    verified = subprocess.run(["openssl", "verify", "-CAfile", ca, cert], capture_output=True, text=True, check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    argv = ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", cert]
    sans = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    assert "DNS:topolvm-webhook.topolvm-system.svc" in sans


def test_own_certificate(helm: Path) -> None:
    r = helm_chart.render(helm, helm_chart.OWN_CERT)
    assert not r.of("Certificate") and not r.of("Secret")
    hook = r.one("MutatingWebhookConfiguration", "topolvm-hook")
    assert (
        hook["webhooks"][0]["clientConfig"]["caBundle"] == helm_chart.CA_BUNDLE
        and "annotations" not in hook["metadata"]
    )
    volumes = r.one("Deployment", "topolvm-webhook")["spec"]["template"]["spec"]["volumes"]
    assert volumes == [{"name": "certs", "secret": {"secretName": "my-tls"}}]


def test_existing_cert_manager_issuer(helm: Path) -> None:
    r = helm_chart.render(helm, {"webhook": {"existingCertManagerIssuer": helm_chart.ISSUER}})
    assert not r.of("Issuer") and r.names("Certificate") == {"topolvm-mutatingwebhook"}
    assert r.one("Certificate", "topolvm-mutatingwebhook")["spec"]["issuerRef"] == helm_chart.ISSUER


def test_lvmd_as_a_daemonset(helm: Path) -> None:
    r = helm_chart.render(helm, {"lvmd": {"managed": True}})
    config = lvmd_config.parse(r.one("ConfigMap", "topolvm-lvmd")["data"]["lvmd.yaml"])
    assert [c.name for c in config.device_classes] == ["ssd", "ssd-thin"]
    spec = r.one("DaemonSet", "topolvm-lvmd")["spec"]["template"]["spec"]
    assert spec["hostPID"] is True and spec["automountServiceAccountToken"] is False
    subjects = [s["name"] for d in r.of("RoleBinding") + r.of("ClusterRoleBinding") for s in d["subjects"]]
    assert "topolvm-lvmd" not in subjects  # no API access at all
    node = r.container("DaemonSet", "topolvm-node", "topolvm-node")
    assert "--lvmd-socket=/run/topolvm/lvmd.sock" in node["command"]


def test_lvmd_embedded_in_topolvm_node(helm: Path) -> None:
    r = helm_chart.render(helm, {"node": {"lvmdEmbedded": True}})
    text = r.one("ConfigMap", "topolvm-lvmd")["data"]["lvmd.yaml"]
    assert "socket-name" not in text and lvmd_config.parse(text).device_classes
    assert "topolvm-lvmd" not in r.names("DaemonSet")
    node = r.container("DaemonSet", "topolvm-node", "topolvm-node")
    assert "--lvmd-config=/etc/topolvm/lvmd.yaml" in node["command"]
    assert not [a for a in node["command"] if a.startswith("--lvmd-socket")]
    assert r.one("DaemonSet", "topolvm-node")["spec"]["template"]["spec"]["hostPID"] is True


def test_single_controller_without_capacity_tracking_or_snapshots(helm: Path) -> None:
    r = helm_chart.render(helm, helm_chart.MINIMAL_CONTROLLER)
    pod = r.one("Deployment", "topolvm-controller")["spec"]["template"]["spec"]
    names = [c["name"] for c in pod["containers"]]
    assert names == ["topolvm-controller", "csi-provisioner", "csi-resizer", "liveness-probe"]
    args = [a for c in pod["containers"] for a in c.get("args", [])]
    assert not [a for a in args if a.startswith(("--leader-election", "--enable-capacity", "--capacity-ownerref"))]
    granted = {res for rule in r.rules("ClusterRole") + r.rules("Role") for res in rule["resources"]}
    assert not granted & {"leases", "csistoragecapacities", "volumesnapshotcontents/status", "volumesnapshotclasses"}
    # the one Role left is topolvm-node's, for its Events in default (none of the controller's)
    assert r.names("Role") == {"topolvm-system:node-events"} and not r.of("VolumeSnapshotClass")
    assert r.one("CSIDriver", "topolvm.io")["spec"]["storageCapacity"] is False


def test_other_release_namespace(helm: Path) -> None:
    r = helm_chart.render(helm, {"namespace": {"create": False}}, "storage")
    assert not r.of("Namespace")
    namespaced = [d for d in r.docs if "namespace" in d["metadata"]]
    # all in the release's namespace but topolvm-node's Role for Events about cluster-scoped objects, in default
    in_default = {(d["kind"], d["metadata"]["name"]) for d in namespaced if d["metadata"]["namespace"] == "default"}
    assert in_default == {("Role", "storage:node-events"), ("RoleBinding", "storage:node-events")}
    assert {d["metadata"]["namespace"] for d in namespaced} == {"storage", "default"}
    bindings = r.of("ClusterRoleBinding") + r.of("RoleBinding")
    assert {s["namespace"] for d in bindings for s in d["subjects"]} == {"storage"}
    assert all(n.startswith(("storage:", "storage-")) for n in r.names("ClusterRole") | r.names("ClusterRoleBinding"))
    (hook,) = r.one("MutatingWebhookConfiguration", "topolvm-hook")["webhooks"]
    ignored = hook["namespaceSelector"]["matchExpressions"][0]
    assert ignored["key"] == "kubernetes.io/metadata.name"
    assert ignored["values"] == ["kube-system", "topolvm-system", "storage"]
    provisioner = r.container("Deployment", "topolvm-controller", "csi-provisioner")
    assert "--leader-election-namespace=storage" in provisioner["args"]
    assert r.one("Certificate", "topolvm-mutatingwebhook")["spec"]["dnsNames"][-1] == "topolvm-webhook.storage.svc"


def test_storage_and_snapshot_classes(helm: Path) -> None:
    r = helm_chart.render(helm, helm_chart.STORAGE_CLASSES)
    fast = r.one("StorageClass", "topolvm-fast")
    assert fast["metadata"]["annotations"] == {"storageclass.kubernetes.io/is-default-class": "true"}
    parameters = {"topolvm.io/device-class": "ssd", "topolvm.io/lvcreate-option-class": "raid1"}
    assert fast["parameters"] == {"csi.storage.k8s.io/fstype": "ext4", **parameters}
    assert (fast["reclaimPolicy"], fast["mountOptions"], fast["allowVolumeExpansion"]) == ("Retain", ["noatime"], False)
    assert not r.one("StorageClass", "topolvm-block").get("parameters")
    assert r.one("VolumeSnapshotClass", "thin")["deletionPolicy"] == "Retain"


def test_podmonitors(helm: Path) -> None:
    assert not helm_chart.render(helm, {}).of("PodMonitor")
    r = helm_chart.render(helm, helm_chart.PODMONITORS)
    assert r.names("PodMonitor") == {"topolvm-controller", "topolvm-node"}
    for monitor in r.of("PodMonitor"):
        workload = monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        kind = "Deployment" if workload == "topolvm-controller" else "DaemonSet"
        ports = {p["name"] for p in r.container(kind, workload, workload)["ports"]}
        assert monitor["spec"]["podMetricsEndpoints"][0]["port"] in ports
    assert r.one("PodMonitor", "topolvm-node")["metadata"]["labels"] == {"release": "prom"}


def test_placement_resources_and_image(helm: Path) -> None:
    r = helm_chart.render(helm, helm_chart.PLACEMENT_RESOURCES_IMAGE)
    placed = [("Deployment", "topolvm-controller"), ("DaemonSet", "topolvm-node"), ("Deployment", "topolvm-webhook")]
    for kind, name in placed:
        pod = r.one(kind, name)["spec"]["template"]["spec"]
        assert (pod["nodeSelector"], pod["tolerations"]) == (
            helm_chart.PLACED["nodeSelector"],
            helm_chart.PLACED["tolerations"],
        )
        assert pod["imagePullSecrets"] == [{"name": "regcred"}]
        main = pod["containers"][0]
        assert (main["image"], main["imagePullPolicy"]) == ("registry.example/topolvm-py:0.2.0", "IfNotPresent")
    scheduler = r.one("DaemonSet", "topolvm-scheduler")["spec"]["template"]["spec"]
    assert scheduler["nodeSelector"] == {"cp": "yes"} and scheduler["tolerations"][0]["effect"] == "NoSchedule"
    assert r.container("Deployment", "topolvm-controller", "csi-provisioner")["resources"] == helm_chart.RESOURCES
    assert "resources" not in r.container("Deployment", "topolvm-controller", "csi-resizer")


def test_security_context_of_the_unprivileged_pods(helm: Path) -> None:
    """`securityContext` is the pod securityContext of controller, scheduler (both modes) and webhook; topolvm-node
    and lvmd stay root whatever it says (the image's default user is not)."""
    own = {"runAsNonRoot": True, "runAsUser": 10000, "runAsGroup": 10000}
    for values in ({}, {"scheduler": {"type": "deployment"}}):
        r = helm_chart.render(helm, {"securityContext": own, "lvmd": {"managed": True}, **values})
        kind = "Deployment" if values else "DaemonSet"
        for workload_kind, name in (("Deployment", "topolvm-controller"), (kind, "topolvm-scheduler")):
            assert r.one(workload_kind, name)["spec"]["template"]["spec"]["securityContext"] == own
        assert r.one("Deployment", "topolvm-webhook")["spec"]["template"]["spec"]["securityContext"] == own
        for name, container in (("topolvm-node", "topolvm-node"), ("topolvm-lvmd", "lvmd")):
            assert r.container("DaemonSet", name, container)["securityContext"] == {"privileged": True, "runAsUser": 0}
            assert "securityContext" not in r.one("DaemonSet", name)["spec"]["template"]["spec"]
    default = helm_chart.render(helm, {})
    assert default.one("Deployment", "topolvm-controller")["spec"]["template"]["spec"]["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
    }


def test_kubelet_work_directory(helm: Path) -> None:
    kubelet = helm_chart.MICROK8S_KUBELET
    r = helm_chart.render(helm, {"node": {"kubeletWorkDirectory": kubelet}})
    node = r.container("DaemonSet", "topolvm-node", "topolvm-node")
    assert f"--csi-socket={kubelet}/plugins/topolvm.io/node/csi-topolvm.sock" in node["command"]
    assert f"--allowed-target-prefix={kubelet}/" in node["command"]
    paths = {v["hostPath"]["path"] for v in r.one("DaemonSet", "topolvm-node")["spec"]["template"]["spec"]["volumes"]}
    assert {f"{kubelet}/plugins_registry/", f"{kubelet}/pods/", f"{kubelet}/plugins/topolvm.io/node"} <= paths
    # Where kubelet publishes raw block volumes (plugins/kubernetes.io/csi/volumeDevices/publish/...): topolvm-node
    # creates the device there, so the host must see it (Bidirectional), as for filesystem mounts under pods/.
    csi_dir = f"{kubelet}/plugins/kubernetes.io/csi"
    assert csi_dir in paths
    mounts = {m["mountPath"]: m for m in node["volumeMounts"]}
    assert mounts[csi_dir].get("mountPropagation") == "Bidirectional"
    assert mounts[f"{kubelet}/pods"].get("mountPropagation") == "Bidirectional"


# (livenessProbe key, workload kind, workload, container) of every liveness probe of topolvm-py's own programs
LIVENESS = [
    ("topolvm_node", "DaemonSet", "topolvm-node", "topolvm-node"),
    ("csi_registrar", "DaemonSet", "topolvm-node", "csi-registrar"),
    ("topolvm_controller", "Deployment", "topolvm-controller", "topolvm-controller"),
    ("topolvm_scheduler", "DaemonSet", "topolvm-scheduler", "topolvm-scheduler"),
    ("topolvm_webhook", "Deployment", "topolvm-webhook", "topolvm-webhook"),
]


def test_liveness_probe_timings(helm: Path) -> None:
    """livenessProbe.<component> (upstream's keys): upstream's defaults (10 s delay, 3 s timeout, every 60 s,
    kubelet's failureThreshold), each field settable per component, an emptied field left to kubelet."""
    defaults = helm_chart.render(helm, {})
    for _, kind, workload, container in LIVENESS:
        probe = defaults.container(kind, workload, container)["livenessProbe"]
        assert {k: v for k, v in probe.items() if k != "httpGet"} == {
            "initialDelaySeconds": 10,
            "timeoutSeconds": 3,
            "periodSeconds": 60,
        }, (workload, container)
    tuned = {key: {"failureThreshold": 5, "initialDelaySeconds": None, "periodSeconds": 20} for key, *_ in LIVENESS}
    changed = helm_chart.render(helm, {"livenessProbe": tuned})
    for _, kind, workload, container in LIVENESS:
        probe = changed.container(kind, workload, container)["livenessProbe"]
        assert {k: v for k, v in probe.items() if k != "httpGet"} == {
            "failureThreshold": 5,
            "timeoutSeconds": 3,
            "periodSeconds": 20,
        }, (workload, container)
        assert probe["httpGet"] == defaults.container(kind, workload, container)["livenessProbe"]["httpGet"]
    # All emptied (or the whole key null): the probes keep only their target, kubelet's timings apply.
    emptied = {key: dict.fromkeys(("initialDelaySeconds", "timeoutSeconds", "periodSeconds")) for key, *_ in LIVENESS}
    for values in ({"livenessProbe": emptied}, {"livenessProbe": None}):
        bare = helm_chart.render(helm, values)
        for _, kind, workload, container in LIVENESS:
            assert list(bare.container(kind, workload, container)["livenessProbe"]) == ["httpGet"], values


# (workload kind, workload, container, our program, its argument parser, user it runs as when builtin)
SIDECARS = [
    ("DaemonSet", "topolvm-node", "csi-registrar", "topolvm-registrar", registrar.parse_args, 0),
    ("DaemonSet", "topolvm-node", "liveness-probe", "topolvm-livenessprobe", livenessprobe.parse_args, 0),
    ("Deployment", "topolvm-controller", "liveness-probe", "topolvm-livenessprobe", livenessprobe.parse_args, None),
]


def test_builtin_sidecars(helm: Path) -> None:
    """image.csi.builtinSidecars: the registrar and every liveness probe run topolvm-py's image and our program,
    with upstream's args (which our programs accept); beside topolvm-node as root, beside topolvm-controller as
    the pod's user; the other sidecars keep upstream's images."""
    upstream = helm_chart.render(helm, {})
    image = {"repository": "registry.example/topolvm-py", "reference": "0.2.0", "pullPolicy": "IfNotPresent"}
    builtin = helm_chart.render(helm, {"image": {"csi": {"builtinSidecars": True}, **image}})
    restricted = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    for kind, workload, name, program, parse_args, user in SIDECARS:
        before = upstream.container(kind, workload, name)
        after = builtin.container(kind, workload, name)
        assert before["image"].startswith("registry.k8s.io/sig-storage/") and "command" not in before
        assert (after["image"], after["imagePullPolicy"]) == ("registry.example/topolvm-py:0.2.0", "IfNotPresent")
        assert after["command"] == [program]
        assert after["args"] == before["args"]
        parse_args(after["args"])  # exits 2 on a flag our program does not take
        assert before["securityContext"] == restricted
        assert after["securityContext"] == (restricted if user is None else {**restricted, "runAsUser": user})
        assert {
            k: v for k, v in after.items() if k not in ("image", "imagePullPolicy", "command", "securityContext")
        } == {k: v for k, v in before.items() if k not in ("image", "securityContext")}
    controller_pod = builtin.one("Deployment", "topolvm-controller")["spec"]["template"]["spec"]
    assert controller_pod["securityContext"]["runAsUser"] == 65532  # opens topolvm-controller's 0600 socket
    assert "securityContext" not in builtin.one("DaemonSet", "topolvm-node")["spec"]["template"]["spec"]
    for name in ("csi-provisioner", "csi-resizer", "csi-snapshotter"):
        assert builtin.container("Deployment", "topolvm-controller", name)["image"].startswith("registry.k8s.io/")
    others = [d for d in upstream.docs if d["kind"] not in ("DaemonSet", "Deployment")]
    assert others == [d for d in builtin.docs if d["kind"] not in ("DaemonSet", "Deployment")]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        pytest.param({"controller": {"leaderElection": {"enabled": False}}}, "leaderElection", id="no-election"),
        pytest.param({"node": {"lvmdEmbedded": True}, "lvmd": {"managed": True}}, "two lvmd", id="two-lvmd"),
        pytest.param({"webhook": {"selfSigned": True}}, "choose one", id="cert-manager-and-self-signed"),
        pytest.param({"scheduler": {"type": "static"}}, "daemonset or deployment", id="scheduler-type"),
    ],
)
def test_contradictory_values_are_refused(helm: Path, values: dict[str, Any], message: str) -> None:
    done = helm_chart.run_helm(
        helm, "template", "topolvm", str(helm_chart.CHART), "--namespace", NAMESPACE, values=values
    )
    assert done.returncode != 0 and message in done.stderr, done.stderr
