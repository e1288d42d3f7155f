"""``topolvm-sim snapshot`` against the local kube-apiserver, and the ``place-claim`` trace operation it writes.

The live cluster of the main case (its nodes carry a label unique to the test, so other tests' objects on the
shared API server stay out through ``--selector`` and ``--namespace``):
- pool ``a`` (lvmd: thick ``ssd``, default, spare 10 GiB): two nodes with a 100 GiB VG; a1 holds a bound 50 GiB
  claim, a bound claim of 5 GiB + 1 MiB (LVM allocates 5 GiB + 4 MiB) and a 2 GiB LV no claim owns;
- pool ``b`` (thick ``ssd`` without spare and thin ``thin``, overprovisioned 5x, in one VG): one tainted node with
  a 200 GiB VG holding a 50 GiB thin pool, a bound 20 GiB thick claim and a bound 30 GiB thin claim;
- a pending pod with a pending 20 GiB ``ssd`` claim.
The annotations are what topolvm-node would publish for those VGs, so the inferred disks are exact.
"""

from __future__ import annotations

import argparse
import copy
import logging
import socket
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from simulator import cli, node_shapes, run, scenario, snapshot_args, trace
from tests.sim.live_cluster import Live
from tests.support.controlplane import ControlPlane
from topolvm import constants, errors
from topolvm.core import resources
from topolvm.kube import client

GiB = 1 << 30
MiB = 1 << 20
EXTENT = 4 * MiB
LVMD_A = {"device-classes": [{"name": "ssd", "volume-group": "vg1", "default": True, "spare-gb": 10}]}
LVMD_B = {
    "device-classes": [
        {"name": "ssd", "volume-group": "vg1", "default": True, "spare-gb": 0},
        {"name": "thin", "volume-group": "vg1", "type": "thin",
         "thin-pool": {"name": "pool0", "overprovision-ratio": 5.0}},
    ]
}  # fmt: skip


@pytest.fixture
def live(kube: client.KubeCluster) -> Live:
    c = Live(kube)
    ssd, thin = c.storage_class("ssd"), c.storage_class("thin")
    a1 = c.node("a1", {"ssd": 100 * GiB - 50 * GiB - (5 * GiB + EXTENT) - 2 * GiB - 10 * GiB}, pool="a")
    c.node("a2", {"ssd": 90 * GiB}, pool="a")
    taint = resources.Taint("dedicated", resources.TaintEffect.NO_SCHEDULE, "db")
    b1 = c.node("b1", {"ssd": 130 * GiB, "thin": 220 * GiB}, pool="b", cpu=16000, memory=64 * GiB, taints=(taint,))
    c.claim("data-a1", ssd, 50 * GiB, c.volume(a1, 50 * GiB, "ssd", "lv1"))
    c.claim("odd-a1", ssd, 5 * GiB + MiB, c.volume(a1, 5 * GiB + MiB, "ssd", "lv2"))
    c.volume(a1, 2 * GiB, "", "orphan")  # the default class, no claim
    c.claim("db-b1", ssd, 20 * GiB, c.volume(b1, 20 * GiB, "ssd", "lv3"))
    c.claim("scratch-b1", thin, 30 * GiB, c.volume(b1, 30 * GiB, "thin", "lv4"))
    c.claim("pending-data", ssd, 20 * GiB)
    c.pod("pending", "pending-data")
    return c


def write_lvmd(tmp_path: Path, name: str, data: dict[str, Any]) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def cli_args(kube_api: ControlPlane, live: Live, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "snapshot", "--kubeconfig", kube_api.kubeconfig, "--selector", f"snapshot-test={live.p}",
        "--namespace", live.p, "--out", str(tmp_path / "out" / "scenario.yaml"), *extra,
    ]  # fmt: skip


def pooled_args(kube_api: ControlPlane, live: Live, tmp_path: Path) -> list[str]:
    """Pools named by a label, each with its lvmd.yaml."""
    a, b = write_lvmd(tmp_path, "a", LVMD_A), write_lvmd(tmp_path, "b", LVMD_B)
    pools = ["--pool-label", "example.com/pool", "--lvmd-config", f"a={a}", "--lvmd-config", f"b={b}"]
    return cli_args(kube_api, live, tmp_path, *pools)


def words(printed: str) -> str:
    """Terminal output with rich's line wrapping undone."""
    return " ".join(printed.split())


def annotations(kube: client.KubeCluster, prefix: str) -> dict[tuple[str, str], int]:
    """Live free bytes by (node, device class)."""
    found = {}
    for node in kube.list_of(resources.NODE):
        if node.meta.labels.get("snapshot-test") != prefix:
            continue
        for key, value in node.meta.annotations.items():
            name = key.removeprefix(constants.CAPACITY_KEY_PREFIX)
            if key.startswith(constants.CAPACITY_KEY_PREFIX) and name != constants.DEFAULT_DEVICE_CLASS_ANNOTATION_NAME:
                found[(node.name, name)] = int(value)
    return found


def test_snapshot_pools_placements_and_a_replay_that_reproduces_free_capacity(
    kube_api: ControlPlane, kube: client.KubeCluster, live: Live, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(pooled_args(kube_api, live, tmp_path)) == 0
    printed = words(capsys.readouterr().out)
    assert "3 node(s) in 2 pool(s)" in printed and "volumes placed at t=0: 5" in printed, printed
    path = tmp_path / "out" / "scenario.yaml"
    data = yaml.safe_load(path.read_text())
    assert data["trace"] == "scenario.trace.jsonl"
    p = live.p
    pools = {pool["name"]: pool for pool in data["cluster"]["node-pools"]}
    assert sorted(pools) == ["a", "b"]
    a, b = pools["a"], pools["b"]
    assert (a["count"], a["node-names"], a["cpu"], a["memory"]) == (2, [f"{p}-a1", f"{p}-a2"], "8", "32Gi")
    assert a["volume-groups"] == [{"name": "vg1", "disks": ["100Gi"]}] and a["lvmd"] == LVMD_A
    assert a["labels"] == {"example.com/pool": "a", "snapshot-test": p}  # not the hostname
    assert (b["count"], b["cpu"], b["memory"]) == (1, "16", "64Gi")
    assert b["volume-groups"] == [{"name": "vg1", "disks": ["200Gi"]}]
    assert b["thin-pools"] == [{"volume-group": "vg1", "name": "pool0", "size": "50Gi"}]
    assert b["taints"] == [{"key": "dedicated", "effect": "NoSchedule", "value": "db"}]
    classes = {sc["name"]: sc for sc in data["cluster"]["storage-classes"]}
    assert classes[f"{p}-ssd"]["device-class"] == "ssd" and classes[f"{p}-thin"]["device-class"] == "thin"

    ops = list(trace.read(tmp_path / "out" / "scenario.trace.jsonl"))
    places = {(o.namespace, o.name): (o.node, o.storage_class, trace.size_of(o.size)) for o in ops
              if isinstance(o, trace.PlaceClaim)}  # fmt: skip
    orphan = places.pop(("topolvm-unclaimed", f"{p}-orphan"))  # in a storage class of its device class
    assert orphan[::2] == (f"{p}-a1", 2 * GiB) and classes[orphan[1]].get("device-class", "ssd") == "ssd"
    assert places == {
        (p, "data-a1"): (f"{p}-a1", f"{p}-ssd", 50 * GiB),
        (p, "odd-a1"): (f"{p}-a1", f"{p}-ssd", 5 * GiB + MiB),
        (p, "db-b1"): (f"{p}-b1", f"{p}-ssd", 20 * GiB),
        (p, "scratch-b1"): (f"{p}-b1", f"{p}-thin", 30 * GiB),
    }
    pods = [o for o in ops if isinstance(o, trace.CreatePod)]
    assert [(o.name, o.cpu, o.memory, o.t > 0) for o in pods] == [("pending", "1", "1Gi", True)]
    assert [(c.name, c.storage_class, c.bytes) for c in pods[0].claims] == [("pending-data", f"{p}-ssd", 20 * GiB)]

    loaded = scenario.load(path)  # the trace is found next to the scenario, wherever the caller stands
    spec = msgspec.structs.replace(loaded.spec, duration="10m", sample_interval="1m")
    result = run.simulate(scenario.Loaded(spec, loaded.lvmd))
    assert result.error is None and result.summary["workload_errors"] == [], result.summary["workload_errors"]
    volumes_on = {f"{p}-a1": 3, f"{p}-a2": 0, f"{p}-b1": 2}
    simulated = {(node, dc): free for t, node, dc, _size, free in result.per_node if t == 60.0}
    wanted = annotations(kube, p)
    assert set(simulated) == set(wanted)
    for key, free in wanted.items():  # before the pending pod comes (t = 2 min + 1 s per volume)
        assert abs(simulated[key] - free) <= EXTENT * volumes_on[key[0]], key
    [decision] = result.decisions
    assert decision.pod == (p, "pending") and decision.node == f"{p}-a2"  # a1 scores lower (33 GiB); b1 is tainted
    end = {(node, dc): free for t, node, dc, _size, free in result.per_node if t == 600.0}
    assert end[(f"{p}-a2", "ssd")] == 90 * GiB - 20 * GiB


def test_without_lvmd_config_each_annotation_is_a_thick_class_of_its_own(
    kube_api: ControlPlane, kube: client.KubeCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    c = Live(kube)
    ssd = c.storage_class("ssd")
    n1 = c.node("n1", {"ssd": 40 * GiB, "hdd": 500 * GiB})
    n2 = c.node("n2", {"ssd": 50 * GiB, "hdd": 500 * GiB}, cordoned=True)
    c.claim("data", ssd, 10 * GiB, c.volume(n1, 10 * GiB, "ssd", "lv"))
    assert cli.main(cli_args(kube_api, c, tmp_path, "--trace-out", str(tmp_path / "t.jsonl"))) == 0
    assert "no --lvmd-config" in words(capsys.readouterr().out)
    data = yaml.safe_load((tmp_path / "out" / "scenario.yaml").read_text())
    assert data["trace"] == "../t.jsonl"
    [pool] = data["cluster"]["node-pools"]
    assert (pool["name"], pool["count"]) == ("8cpu-32gi", 2)
    assert pool["volume-groups"] == [{"name": "hdd", "disks": ["500Gi"]}, {"name": "ssd", "disks": ["50Gi"]}]
    assert pool["lvmd"]["device-classes"] == [
        {"name": "hdd", "volume-group": "hdd", "spare-gb": 0},
        {"name": "ssd", "volume-group": "ssd", "spare-gb": 0, "default": True},
    ]
    scenario.load(tmp_path / "out" / "scenario.yaml")
    ops = list(trace.read(tmp_path / "t.jsonl"))
    assert [type(o).__name__ for o in ops] == ["DrainNode", "PlaceClaim"] and ops[0] == trace.DrainNode(t=0, name=n2)


def test_without_out_the_scenario_goes_to_stdout_and_the_summary_to_stderr(
    kube_api: ControlPlane, kube: client.KubeCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    c = Live(kube)
    c.node("n1", {"ssd": 40 * GiB})
    monkeypatch.chdir(tmp_path)
    argv = ["snapshot", "--kubeconfig", kube_api.kubeconfig, "--selector", f"snapshot-test={c.p}"]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    data = yaml.safe_load(captured.out)
    assert data["trace"] == str(tmp_path / "snapshot.trace.jsonl") and Path(data["trace"]).exists()
    assert "1 node(s) in 1 pool(s)" in words(captured.err)


@pytest.mark.parametrize(
    ("values", "pool_label", "message"),
    [
        pytest.param(["a=LVMD"], None, "POOL=PATH needs --pool-label", id="pool-without-label"),
        pytest.param(["LVMD", "LVMD"], None, "every node has one already", id="twice"),
        pytest.param(["a=missing.yaml"], "pool", "cannot read", id="unreadable"),
        pytest.param(["a=BAD"], "pool", "more than one default device class", id="invalid"),
    ],
)
def test_lvmd_config_arguments(values: list[str], pool_label: str | None, message: str, tmp_path: Path) -> None:
    good, bad = write_lvmd(tmp_path, "good", LVMD_A), write_lvmd(tmp_path, "bad", {"device-classes": [
        {"name": "x", "volume-group": "vg1", "default": True}, {"name": "y", "volume-group": "vg2", "default": True},
    ]})  # fmt: skip
    values = [v.replace("LVMD", good).replace("BAD", bad) for v in values]
    with pytest.raises(errors.ConfigError, match=message):
        snapshot_args.lvmd_configs(values, pool_label)


def test_run_replays_the_scenario_trace_beside_its_workloads(
    kube_api: ControlPlane, live: Live, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli.main(pooled_args(kube_api, live, tmp_path)) == 0
    path = tmp_path / "out" / "scenario.yaml"
    data = yaml.safe_load(path.read_text())
    claim = {"storage-class": f"{live.p}-ssd", "size": {"fixed": "10Gi"}}
    data["workloads"] = [{"name": "db", "replicas": 2, "start": "5m", "cpu": "1", "claims": [claim]}]
    path.write_text(yaml.safe_dump(data))
    monkeypatch.chdir(tmp_path)  # the scenario names its trace relative to itself, not to here
    out = tmp_path / "run"
    argv = ["run", "out/scenario.yaml", "--duration", "10m", "--out", str(out), "--no-progress", "--no-html"]
    assert cli.main(argv) == 0
    summary = yaml.safe_load((out / "summary.json").read_text())
    assert summary["workload_errors"] == [] and summary["pods"]["bound"] == 3  # the pending pod and 2 replicas
    assert summary["provisioner"]["provisioned"] == 8  # 5 placed, 1 pending, 2 replicas


@pytest.mark.parametrize(
    ("kubeconfig", "message"),
    [
        pytest.param("missing", "cannot read the kubeconfig", id="unreadable"),
        pytest.param("garbage", "not a usable kubeconfig", id="malformed"),
        pytest.param("closed-port", "API server unreachable", id="unreachable"),
    ],
)
def test_bad_kubeconfigs_exit_2_with_a_message(
    kubeconfig: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "kubeconfig"
    if kubeconfig == "garbage":
        path.write_text("- just\n- a list\n")
    elif kubeconfig == "closed-port":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # closed when the block ends: nothing listens there
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "x",
            "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        }))  # fmt: skip
    assert cli.main(["snapshot", "--kubeconfig", str(path), "--out", str(tmp_path / "s.yaml")]) == 2
    captured = capsys.readouterr()
    assert message in words(captured.out) and "Traceback" not in captured.out + captured.err
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], "one message, not a retry log"
    assert not (tmp_path / "s.yaml").exists()


# --- place-claim in the simulator, without a live cluster ----------------------------------------------------------

SMALL: dict[str, Any] = {
    "name": "place",
    "duration": "10m",
    "sample-interval": "1m",
    "cluster": {
        "node-pools": [{
            "name": "p", "count": 2, "node-names": ["real-1"], "cpu": "8", "memory": "32Gi",
            "volume-groups": [{"name": "vg", "disks": ["100Gi"]}],
            "lvmd": {"device-classes": [{"name": "ssd", "volume-group": "vg", "default": True, "spare-gb": 0}]},
        }],
        "storage-classes": [{"name": "sc", "device-class": "ssd"}],
    },
}  # fmt: skip


def place(name: str, node: str, size: int, storage_class: str = "sc") -> trace.PlaceClaim:
    return trace.PlaceClaim(t=0, namespace="ns", name=name, storage_class=storage_class, size=size, node=node)


def test_place_claim_provisions_on_its_node_and_records_what_does_not_fit() -> None:
    ops: list[trace.Op] = [
        place("a", "real-1", 30 * GiB),
        place("b", "p-00000", 60 * GiB),  # the pool's second node, named by the simulator
        place("big", "p-00000", 60 * GiB),  # 40 GiB left there
        place("ghost", "elsewhere", GiB),
    ]
    assert [trace.decode_line(trace.encode(op), "x") for op in ops] == ops
    result = run.simulate(scenario.parse(copy.deepcopy(SMALL)), replay=ops)
    assert result.error is None
    free = {node: f for t, node, _dc, _size, f in result.per_node if t == 60.0}
    assert free == {"real-1": 70 * GiB, "p-00000": 40 * GiB}
    errors = result.summary["workload_errors"]
    assert len(errors) == 2, errors
    assert "node 'elsewhere' does not exist" in errors[0]
    assert "ns/big not placed on node p-00000" in errors[1]
    assert result.summary["provisioner"]["provisioned"] == 2


def test_place_claim_of_a_storage_class_the_scenario_lacks_is_refused_before_the_run() -> None:
    ops: list[trace.Op] = [place("a", "real-1", GiB), place("nosc", "real-1", GiB, storage_class="missing")]
    result = run.simulate(scenario.parse(copy.deepcopy(SMALL)), replay=ops)
    assert result.error is not None and "operation 2" in result.error
    assert "no storage class named 'missing'" in result.error
    assert result.summary["provisioner"]["provisioned"] == 0  # nothing ran


def test_a_scenario_trace_is_found_beside_the_scenario_and_replayed_beside_its_workloads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = copy.deepcopy(SMALL)
    claim = {"storage-class": "sc", "size": {"fixed": "10Gi"}}
    data.update(trace="state.jsonl", workloads=[{"name": "w", "replicas": 1, "start": "5m", "claims": [claim]}])
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "scenario.yaml"
    path.write_text(yaml.safe_dump(data))
    trace.write(tmp_path / "sub" / "state.jsonl", [place("a", "real-1", 30 * GiB)])
    monkeypatch.chdir(tmp_path)
    loaded = scenario.load("sub/scenario.yaml")
    assert loaded.spec.trace == str(tmp_path / "sub" / "state.jsonl")
    study_data = cli._data(argparse.Namespace(scenario="sub/scenario.yaml", set=[]))  # plan, compare, sweep
    assert study_data["trace"] == loaded.spec.trace
    result = run.simulate(loaded)
    assert result.summary["workload_errors"] == [] and result.summary["provisioner"]["provisioned"] == 2
    assert [d.pod for d in result.decisions] == [("default", "w-0")]


def test_node_names_must_be_unique() -> None:
    data = copy.deepcopy(SMALL)
    data["cluster"]["node-pools"].append({**data["cluster"]["node-pools"][0], "name": "q"})
    with pytest.raises(errors.ConfigError, match="node names must be unique"):
        scenario.parse(data)


@pytest.mark.parametrize(
    ("published", "lvmd", "disks"),
    [
        pytest.param({"ssd": 40 * GiB}, {"name": "ssd", "volume-group": "vg", "spare-gb": 10}, ["60Gi"], id="linear"),
        pytest.param({"ssd": 0}, {"name": "ssd", "volume-group": "vg", "spare-gb": 10}, ["20Gi"], id="full"),
        pytest.param(
            {"ssd": 40 * GiB},
            {"name": "ssd", "volume-group": "vg", "spare-gb": 0, "lvcreate-options": ["--type=raid1"]},
            ["51Gi", "51Gi"],  # 2 x (40 GiB + 1 extent) free, 2 x (10 GiB + 1 extent) used: rounded up per disk
            id="raid1",
        ),
    ],
)
def test_volume_group_inference(published: dict[str, int], lvmd: dict[str, Any], disks: list[str]) -> None:
    node = resources.Node(
        resources.Meta(name="n", annotations={constants.capacity_annotation(k): str(v) for k, v in published.items()})
    )
    config = node_shapes.Lvmd.of({"device-classes": [lvmd]}, "test")
    vgs, _ = node_shapes.volume_groups(node, config, [node_shapes.Volume("ssd", 10 * GiB)], lambda _: None)
    assert vgs == (("vg", tuple(disks)),)
