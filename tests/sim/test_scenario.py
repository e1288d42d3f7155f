"""Scenario files: the embedded default loads; bad input is refused with an error naming the key, and nothing
runs."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
import yaml

from simulator import budget, cli, scenario, units
from topolvm import errors


def default() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(cli.default_scenario_text())
    return data


def test_the_default_scenario_loads_with_its_lvmd_config() -> None:
    loaded = scenario.loads(cli.default_scenario_text())
    assert loaded.spec.cluster.node_pools[0].count > 0
    classes = [dc.name for dc in loaded.lvmd["nvme"].device_classes]
    assert classes == ["ssd", "thin"]


@pytest.mark.parametrize(
    ("mode", "extender", "tracking"),
    [
        ("both", True, True),
        ("extender", True, False),
        ("capacity-tracking", False, True),
        pytest.param(None, True, True, id="unset-is-both"),
    ],
)
def test_scheduler_modes_and_the_default_as_deploy_ships(mode: str | None, extender: bool, tracking: bool) -> None:
    data = default()
    if mode is None:
        del data["scheduler"]["mode"]
    else:
        data["scheduler"]["mode"] = mode
    spec = scenario.parse(data).spec.scheduler
    assert (spec.mode, spec.extender_on, spec.capacity_tracking_on) == (mode or "both", extender, tracking)


def with_change(path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(default())
    target: Any = data
    parts = path.split(".")
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target[part]
    last = parts[-1]
    if value is DELETE:
        del target[last]
    elif last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return data


DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        pytest.param("cluster.node-pools.0.cont", 3, "unknown field `cont`", id="unknown-key"),
        pytest.param("cluster.node-pools.0.count", -1, "$.cluster.node-pools[0].count", id="negative-count"),
        pytest.param("cluster.node-pools.0.count", 0, "0 nodes", id="zero-nodes"),
        pytest.param(
            "cluster.node-pools.0.volume-groups.0.disks", ["3840000000000"], "needs a unit", id="size-no-unit"
        ),
        pytest.param("cluster.node-pools.0.memory", "256", "memory: size '256' needs a unit", id="memory-no-unit"),
        pytest.param("workloads.0.rate", "-6/d", "rate: rate '-6/d'", id="negative-rate"),
        pytest.param("workloads.0.rate", "6", "count per unit", id="rate-no-unit"),
        pytest.param("duration", "90", "needs a number and a unit", id="duration-no-unit"),
        pytest.param("sample-interval", "0s", "sample-interval: must be positive", id="zero-interval"),
        pytest.param(
            "workloads.0.claims.0.storage-class", "nope", "workloads[0].claims[0].storage-class", id="unknown-sc"
        ),
        pytest.param(
            "cluster.storage-classes.0.device-class", "hdd", "storage-classes[0].device-class", id="unknown-dc"
        ),
        pytest.param("node-events.0.pool", "gpu", "node-events[0].pool", id="unknown-pool"),
        pytest.param("scheduler.mode", "magic", "$.scheduler.mode", id="bad-mode"),
        pytest.param(
            "cluster.node-pools.0.lvmd",
            {"device-classes": [{"name": "x", "volume-group": "vgX"}]},
            "not in cluster.node-pools[0].volume-groups",
            id="lvmd-unknown-vg",
        ),
        pytest.param(
            "cluster.node-pools.0.lvmd",
            {"device-classes": [{"name": "x", "volume-group": "myvg1", "type": "thin"}]},
            "node-pools[0].lvmd",
            id="lvmd-own-validation",
        ),
        pytest.param("workloads.0.expansion.factor", 0.5, "factor", id="shrinking-expansion"),
        pytest.param("duration", "0s", "duration: duration '0s' must be more than 0", id="zero-duration"),
        pytest.param("workloads.0.rate", "0/d", "rate: rate '0/d' must be more than 0", id="zero-rate"),
        pytest.param("cluster.node-pools.0.thin-pools.0.size", "50Ti", "does not fit volume group", id="pool-too-big"),
        pytest.param("cluster.node-pools.0.volume-groups.0.disks", ["0Gi"], "more than 0", id="empty-disk"),
        pytest.param("cluster.storage-classes.0.fstype", "ntfs", "$.cluster.storage-classes[0].fstype", id="fstype"),
        pytest.param("workloads.0.claims.0.size", {"min": "100Gi", "max": "10Gi"}, "is more than max", id="min-max"),
        pytest.param("cluster.node-pools.0.name", "Bad Pool!", "DNS label", id="pool-name"),
        pytest.param("cluster.node-pools.0.labels", {"UPPER case": "x"}, "label key", id="label-key"),
        pytest.param("cluster.node-pools.0.volume-groups.0.extent-size", "3Mi", "power of two", id="extent"),
        pytest.param("scheduler.capacity-poll-interval", "0s", "capacity-poll-interval", id="zero-poll"),
        pytest.param("scheduler.extender.tie-break", "coin", "$.scheduler.extender.tie-break", id="tie-break"),
        # topolvm-scheduler refuses tie-break: extender at this weight too
        pytest.param("scheduler.extender.weight", 160, "weight: 160 lets kube-scheduler's", id="weight-for-ties"),
    ],
)
def test_bad_input_names_the_key(path: str, value: Any, message: str) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        scenario.parse(with_change(path, value), "s.yaml")
    assert message in str(caught.value) and "s.yaml" in str(caught.value)


def test_units() -> None:
    assert units.size("1Gi") == 1 << 30 and units.size("3.84T") == 3_840_000_000_000
    assert units.duration("90d") == 90 * 86400 and units.duration("250ms") == 0.25
    assert units.rate("6/d") == pytest.approx(6 / 86400)
    for bad in ("", "100", 100, "1.5"):
        with pytest.raises(ValueError, match="unit"):
            units.size(bad)


def test_a_scenario_too_large_for_memory_is_refused_with_the_estimate() -> None:
    data = with_change("cluster.node-pools.0.count", 2_000_000)
    estimate = budget.estimate(scenario.parse(data))
    assert estimate.nodes == 2_000_004 and estimate.bytes > 100 << 30
    with pytest.raises(errors.ConfigError, match=r"needs about .* for 2000004 nodes"):
        budget.check(estimate, limit=8 << 30)
    budget.check(budget.estimate(scenario.parse(default())), limit=8 << 30)  # the default fits easily


def test_the_cli_reports_bad_input_without_a_traceback(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(with_change("cluster.node-pools.0.count", 0)))
    assert cli.main(["run", str(bad), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    out = capsys.readouterr().out
    assert "0 nodes" in out and "Traceback" not in out
    assert not (tmp_path / "out").exists()  # nothing was written
    missing = tmp_path / "missing.yaml"
    assert cli.main(["run", str(missing), "--no-progress"]) == 2
    assert "cannot read" in capsys.readouterr().out


def test_a_trace_naming_what_the_scenario_lacks_is_refused_before_the_run(tmp_path: Any) -> None:
    from simulator import trace

    loaded = scenario.parse(default())
    good = trace.CreatePod(
        t=0, namespace="a", name="p", claims=[trace.Claim(name="c", storage_class="topolvm-provisioner", size="1Gi")]
    )
    scenario.check_trace(loaded, [good], "t.jsonl")
    for op, message in (
        (trace.AddNode(t=5, pool="gpu"), "operation 2 (t=5, AddNode): no node pool named 'gpu'"),
        (trace.CreatePod(t=5, namespace="a", name="q", claims=[trace.Claim(name="d", storage_class="nfs", size="1Gi")]),
         "no storage class named 'nfs'"),
        (trace.AddDisk(t=5, node="n", volume_group="vgX", size="1Ti"), "no node pool has a volume group 'vgX'"),
    ):  # fmt: skip
        with pytest.raises(errors.ConfigError, match=re.escape(message)):
            scenario.check_trace(loaded, [good, op], "t.jsonl")
