"""Questions answered with many runs: plan, compare, sweep — from the CLI, on local worker processes and on a
real Dask cluster (``distributed.LocalCluster`` with worker processes)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from simulator import cli, study
from tests.sim.test_simulation import FIVE
from topolvm import errors

GiB = 1 << 30


def stream(rate: str, median: str, life: str = "1d", largest: str = "390Gi") -> dict[str, Any]:
    return {
        "name": "w",
        "rate": rate,
        "lifetime": {"exponential-mean": life},
        "cpu": "250m",
        "claims": [{"storage-class": "sc", "size": {"lognormal-median": median, "sigma": 0.5, "max": largest}}],
    }


def small(tmp_path: Path, **changes: Any) -> Path:
    data = copy.deepcopy(FIVE)
    data["duration"] = "3d"
    data["workloads"] = [stream("10/d", "40Gi")]
    data.update(changes)
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_overrides_reach_into_lists_and_refuse_bad_paths() -> None:
    data = copy.deepcopy(FIVE)
    changed = study.override(data, "cluster.node-pools.0.count=7")
    assert changed["cluster"]["node-pools"][0]["count"] == 7 and data["cluster"]["node-pools"][0]["count"] == 2
    assert study.override(data, "scheduler.extender.mode=pack")["scheduler"]["extender"]["mode"] == "pack"
    for bad in ("cluster.node-pools.9.count=1", "name.x=1", "no-equals-sign"):
        with pytest.raises(errors.ConfigError):
            study.override(data, bad)
    with pytest.raises(errors.ConfigError, match="variant b"):
        study.variants(data, ["b:cluster.node-pools.0.count=-1"])  # validated before any run


def test_the_plan_finds_the_smallest_pool_that_meets_the_target(tmp_path: Path) -> None:
    """Pods of about 120 GiB arriving faster than a few 200 GiB nodes can hold: failures fall as nodes are added."""
    data = copy.deepcopy(FIVE)
    data["duration"] = "2d"
    data["cluster"]["node-pools"] = [data["cluster"]["node-pools"][1]]  # the 200 GiB "mid" pool only
    data["workloads"] = [stream("10/d", "120Gi", largest="190Gi")]  # every pod fits a node of its own
    found = study.plan(data, "mid", low=1, high=24, target=0.1, seeds=[1, 2], runner=study.local_runner(1))
    assert found.chosen is not None
    by_count = {p.node_count: p for p in found.points}
    assert found.meets(by_count[found.chosen]) and by_count[found.chosen].upper <= 0.1
    smaller = [p for p in found.points if p.node_count < found.chosen]
    assert smaller and not any(found.meets(p) for p in smaller)  # the search saw the boundary
    assert by_count[min(by_count)].mean > by_count[found.chosen].mean


def test_plan_compare_and_sweep_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = small(tmp_path)
    out = tmp_path / "compare"
    variants = ["--variant", "spread:scheduler.extender.mode=spread", "--variant", "pack:scheduler.extender.mode=pack"]
    code = cli.main(["compare", str(path), "--seeds", "1", "--workers", "1", "--out", str(out), *variants])
    assert code == 0
    compared = json.loads((out / "compare.json").read_text())
    assert set(compared) == {"spread seed=7", "pack seed=7"}
    assert "<svg" in (out / "report.html").read_text()
    out = tmp_path / "sweep"
    grid = ["--grid", "scheduler.extender.mode=spread,pack", "--grid", "cluster.node-pools.0.count=1,2"]
    code = cli.main(["sweep", str(path), "--seeds", "2", "--workers", "2", "--out", str(out), *grid])
    assert code == 0
    rows = (out / "sweep.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 and rows[0].startswith("scheduler.extender.mode,cluster.node-pools.0.count,runs")
    out = tmp_path / "plan"
    code = cli.main(["plan", str(path), "--pool", "big", "--min", "1", "--max", "4", "--seeds", "1",
                     "--workers", "1", "--target", "0.2", "--out", str(out)])  # fmt: skip
    assert code == 0 and json.loads((out / "plan.json").read_text())["chosen"] is not None
    assert cli.main(["plan", str(path), "--pool", "nope", "--max", "2", "--out", str(out)]) == 2
    assert "no node pool named 'nope'" in capsys.readouterr().out


def test_a_sweep_runs_on_a_dask_cluster_of_worker_processes(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")  # a declared dependency: always there
    path = small(tmp_path)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        out = tmp_path / "dask"
        code = cli.main(["sweep", str(path), "--seeds", "1", "--dask", cluster.scheduler_address, "--out", str(out),
                         "--grid", "scheduler.extender.mode=spread,pack"])  # fmt: skip
        assert code == 0
        with distributed.Client(cluster) as client:
            assert len(client.scheduler_info()["workers"]) == 2
    local = tmp_path / "local"
    assert cli.main(["sweep", str(path), "--seeds", "1", "--workers", "1", "--out", str(local),
                     "--grid", "scheduler.extender.mode=spread,pack"]) == 0  # fmt: skip
    # the same runs, wherever they ran
    assert (out / "sweep.csv").read_text() == (local / "sweep.csv").read_text()


def test_a_plan_with_too_few_pods_says_so_instead_of_blaming_the_node_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = small(tmp_path, duration="1d", workloads=[stream("4/d", "10Gi")])
    code = cli.main(["plan", str(path), "--pool", "big", "--max", "2", "--seeds", "1", "--workers", "1",
                     "--target", "0.01", "--out", str(tmp_path / "plan")])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1 and "too few pods to tell" in out and f"needs at least {study.judged_needed(0.01, 0.9)}" in out
    assert study.wilson_upper(0, study.judged_needed(0.01, 0.9), 0.9) <= 0.01


def test_compare_refuses_a_label_used_twice_before_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = small(tmp_path)
    code = cli.main(
        ["compare", str(path), "--variant", "a:seed=1", "--variant", "a:seed=2", "--out", str(tmp_path / "c")]
    )
    assert code == 2 and "used twice" in capsys.readouterr().out and not (tmp_path / "c").exists()
