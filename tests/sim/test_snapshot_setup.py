"""``topolvm-sim snapshot`` against the local kube-apiserver: the scheduler set-up it writes, the volumes it
leaves out, expansions in flight, and where it finds the kubeconfig."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from simulator import cli, run, scenario, snapshot_args, snapshot_mode, trace
from tests.sim.live_cluster import Live
from tests.support.controlplane import ControlPlane
from topolvm.kube import client

GiB = 1 << 30


def snap(
    kube_api: ControlPlane, live: Live, tmp_path: Path, capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[dict[str, Any], str, list[trace.Op], str]:
    """Run the command on the test's nodes and namespace: (scenario, its text, trace, what it printed)."""
    out = tmp_path / "s.yaml"
    base = ["snapshot", "--selector", f"snapshot-test={live.p}", "--namespace", live.p, "--out", str(out)]
    assert cli.main([*base, *(argv or ("--kubeconfig", kube_api.kubeconfig))]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    text = out.read_text()
    return yaml.safe_load(text), text, list(trace.read(tmp_path / "s.trace.jsonl")), printed


@pytest.mark.parametrize(
    ("objects", "pod", "mode", "says"),
    [
        pytest.param(True, "marked", "both", "1 pod(s) requests topolvm.io/capacity", id="both"),
        pytest.param(False, "marked", "extender", "no CSIStorageCapacity", id="extender"),
        pytest.param(
            True, "plain-pending", "capacity-tracking", "none of 1 pod(s) with unbound TopoLVM claims", id="tracking"
        ),
        pytest.param(True, None, "both", "taken as deploy/ ships it", id="no-pods"),
        # the webhook does not mark a pod whose claims are bound (a StatefulSet's, restarted): it tells nothing
        pytest.param(True, "plain", "both", "no pod with unbound TopoLVM claims", id="bound-claims-only"),
        pytest.param(False, "plain-pending", "both", "neither mechanism seems on", id="neither"),
    ],
)
def test_the_scheduler_mode_is_the_clusters_when_it_shows(
    objects: bool,
    pod: str | None,
    mode: str,
    says: str,
    kube_api: ControlPlane,
    kube: client.KubeCluster,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """CSIStorageCapacity objects of TopoLVM's classes for the nodes: capacity tracking; pods carrying the
    webhook's topolvm.io/capacity: the extender. What does not show is taken as deploy/ ships it."""
    c = Live(kube)
    ssd = c.storage_class("ssd")
    n1 = c.node("n1", {"ssd": 40 * GiB})
    c.claim("data", ssd, 10 * GiB, c.volume(n1, 10 * GiB, "ssd", "lv"))
    if pod == "plain-pending":
        c.claim("new", ssd, GiB)
        c.pod("app", "new")
    elif pod is not None:
        c.pod("app", "data", node=n1, marked=pod == "marked")
    if objects:
        c.capacity(n1, ssd, 40 * GiB)
    data, text, _ops, printed = snap(kube_api, c, tmp_path, capsys)
    assert data["scheduler"] == {"mode": mode}
    assert f"# scheduler.mode {mode}: " in text and says in text + printed
    scenario.load(tmp_path / "s.yaml")


def test_detection_rules() -> None:
    both, why, doubt = snapshot_mode.detect(snapshot_mode.Evidence(None, 1, 0, 0))
    assert (both, doubt) == ("both", None) and "not detectable" in why
    assert snapshot_mode.detect(snapshot_mode.Evidence(3, 1, 2, 2))[0] == "both"
    assert snapshot_mode.detect(snapshot_mode.Evidence(0, 1, 2, 2))[0] == "extender"


def test_volumes_of_gone_nodes_are_left_out_and_expansions_in_flight_are_asked_for_again(
    kube_api: ControlPlane, kube: client.KubeCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A LogicalVolume whose Node is gone (node cleanup did not run) is left out with a warning. A claim asking
    for 15 GiB of a 10 GiB volume (external-resizer has not finished) is placed at 10 GiB and expanded to 15 GiB
    once the volumes are in place; replayed, the expansion goes through the controller."""
    c = Live(kube)
    ssd = c.storage_class("ssd", expandable=True)
    n1 = c.node("n1", {"ssd": 50 * GiB})
    c.claim("grow", ssd, 15 * GiB, c.volume(n1, 10 * GiB, "ssd", "lv"), capacity=10 * GiB)
    c.volume(f"{c.p}-gone", 5 * GiB, "ssd", "lost")
    _data, text, ops, printed = snap(kube_api, c, tmp_path, capsys)
    # (the warning names the first five; other tests on the same API server may have left volumes of gone nodes)
    assert "LogicalVolume(s) on nodes that no longer exist are left out" in printed, printed
    places = [o for o in ops if isinstance(o, trace.PlaceClaim)]
    assert [(o.name, trace.size_of(o.size)) for o in places] == [("grow", 10 * GiB)]
    [grow] = [o for o in ops if isinstance(o, trace.ExpandClaim)]
    assert (grow.namespace, grow.name, trace.size_of(grow.size)) == (c.p, "grow", 15 * GiB)
    assert grow.t > places[0].t and "expanding 1 claim(s)" in text
    loaded = scenario.load(tmp_path / "s.yaml")
    spec = msgspec.structs.replace(loaded.spec, duration="10m", sample_interval="1m")
    result = run.simulate(scenario.Loaded(spec, loaded.lvmd))
    assert result.summary["workload_errors"] == [] and result.summary["provisioner"]["expanded"] == 1


def test_the_kubeconfig_is_kubeconfig_then_the_home_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home, a, b = tmp_path / "home", tmp_path / "a", tmp_path / "b"
    (home / ".kube").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    assert snapshot_args.default_kubeconfig() is None
    (home / ".kube" / "config").write_text("{}")
    assert snapshot_args.default_kubeconfig() == str(home / ".kube" / "config")
    b.write_text("{}")
    monkeypatch.setenv("KUBECONFIG", f"{a}:{b}")  # the first that exists
    assert snapshot_args.default_kubeconfig() == str(b)
    monkeypatch.setenv("KUBECONFIG", str(a))  # named but missing: reading it says so
    assert snapshot_args.default_kubeconfig() == str(a)
    sub = next(a for a in cli.build_parser()._actions if a.dest == "command")
    help_text = " ".join(sub.choices["snapshot"].format_help().split())  # type: ignore[attr-defined]
    assert "default: $KUBECONFIG's first existing file, else ~/.kube/config" in help_text


def test_without_kubeconfig_the_home_one_is_used(
    kube_api: ControlPlane,
    kube: client.KubeCluster,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    c = Live(kube)
    c.node("n1", {"ssd": 40 * GiB})
    (tmp_path / "home" / ".kube").mkdir(parents=True)
    shutil.copy(kube_api.kubeconfig, tmp_path / "home" / ".kube" / "config")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    _data, _text, _ops, printed = snap(kube_api, c, tmp_path, capsys, "--name", "home")
    assert "1 node(s) in 1 pool(s)" in printed
