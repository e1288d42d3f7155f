"""The HTML reports: what each page holds, that it is the same bytes for the same result, and that it needs nothing
outside its own file (tests/sim/test_report_chromium.py renders them in headless Chromium)."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from simulator import outputs, plots, report, run
from tests.sim import synthetic
from tests.sim.report_page import (
    COMPARISON_PLOTS,
    RUN_PLOTS,
    Page,
    assert_plots_drawn,
    assert_self_contained,
)

HOSTILE = "--><script>alert(1)</script><img src=http://evil.example/x.png>"


@pytest.fixture(scope="module")
def result() -> run.Result:
    return synthetic.result()


@pytest.fixture(scope="module")
def run_report(result: run.Result, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic run's report, written once for the tests that only read it."""
    return report.write_run(result, tmp_path_factory.mktemp("run-report") / "report.html")


# --- one run ---
def test_run_report_has_every_plot_drawn_with_a_caption(run_report):
    page = Page(run_report.read_text())
    assert_plots_drawn(page, RUN_PLOTS)
    assert "spread across nodes" in page.figures["plot-utilisation-ssd"].caption


def test_run_report_restates_the_scenario_it_simulated(result, run_report):
    """Nodes and their shapes, storage classes, policies, workload, events and seed, as the scenario gave them."""
    text = run_report.read_text()
    page = Page(text)
    section = text[text.index('<section id="scenario">') : text.index("</section>", text.index('id="scenario"'))]
    assert "seed 1, simulated 90d, sampled every 6h" in section
    pool = page.cells[page.cells.index("nvme") : page.cells.index("nvme") + 9]
    assert pool[:5] == ["nvme", "40", "32", "256Gi", "110"]
    assert pool[5] == "myvg1: 3.84T, 3.84T" and "pool0" in pool[6] and "size=2Ti" in pool[6]
    assert "ssd (volume-group=myvg1, default=yes, spare-gb=10)" in pool[7] and "overprovision-ratio=4.0" in pool[7]
    thin = page.cells.index("topolvm-provisioner-thin")
    assert page.cells[thin : thin + 3] == ["topolvm-provisioner-thin", "thin", "WaitForFirstConsumer"]
    first = page.cells.index("scheduler mode")
    policies = dict(zip(page.cells[first::2], page.cells[first + 1 :: 2], strict=False))
    assert policies["scheduler mode"] == "both"
    assert policies["extender mode"] == "spread" and policies["extender weight"] == "200"
    assert policies["extender reservation-ttl"] == "600s"
    workloads = {name: page.cells[page.cells.index(name) + 1] for name in ("db", "ci-scratch", "kafka")}
    assert workloads == {"db": "14/d from 0s", "ci-scratch": "40/d from 0s", "kafka": "StatefulSet of 6 from 7d"}
    assert "at=60d, pool=nvme, action=add, count=4" in page.cells


def test_run_report_needs_nothing_outside_its_file(run_report):
    text = run_report.read_text()
    assert_self_contained(Page(text))
    assert "Content-Security-Policy" in text and "default-src 'none'" in text


def test_run_report_is_the_same_bytes_for_the_same_result(run_report, tmp_path):
    first = run_report.read_bytes()
    again = dataclasses.replace(synthetic.result(), wall_seconds=4321.987)  # built anew, run slower: same report
    second = report.write_run(again, tmp_path / "b.html").read_bytes()
    assert first == second
    assert b"4321.98" not in second


@pytest.mark.slow
def test_run_report_does_not_depend_on_the_process(tmp_path):
    """Hash randomisation differs between processes; the report must not (sets are sorted, SVG ids are salted)."""
    script = (
        "import sys; from pathlib import Path; from simulator import report; from tests.sim import synthetic; "
        "report.write_run(synthetic.result(samples=12, nodes=3), Path(sys.argv[1]))"
    )
    root = Path(__file__).resolve().parents[2]
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-c", script, str(tmp_path / f"{seed}.html")], cwd=root, env=env, check=True)
    assert (tmp_path / "1.html").read_bytes() == (tmp_path / "2.html").read_bytes()
    assert (tmp_path / "1.html").read_bytes() == report.run_html(synthetic.result(samples=12, nodes=3)).encode()


def test_run_report_shows_the_summary_figures_of_the_terminal_table(result, run_report):
    text = run_report.read_text()
    page = Page(text)
    s = result.summary
    pods = s["pods"]
    assert f"{pods['failed']} ({pods['failure_rate']:.2%} of {pods['judged']})" in page.cells
    assert f"{s['scheduling']['attempts']} ({s['scheduling']['failed_attempts']})" in page.cells
    assert "class thin: stranded free bytes" in page.cells
    header = text.split("<h2>", 1)[0]
    assert "extender mode, seed 1" in header and s["decisions_sha256"] in header


def test_terminal_table_and_report_share_their_rows(result):
    table = outputs.table(result)
    measures, values = (list(column.cells) for column in table.columns)
    assert list(zip(measures, values, strict=True)) == outputs.rows(result.summary)
    assert table.title == outputs.title(result.summary)


@pytest.mark.parametrize("device_class", ["ssd", "thin"])
def test_heatmap_shows_each_nodes_share_as_the_series_measures_it(result, device_class):
    """Per-node rows carry a thin class's pool size (lvmd's report) but its free bytes overprovisioned; the
    heatmap still agrees with the observer's per-node figures."""
    nodes, times, grid = plots.node_grid(result.per_node, result.series, device_class)
    assert len(nodes) == 6 and times[-1] == result.series[-1]["t"]
    last = result.series[-1]
    assert np.nanmax(grid[:, -1]) == pytest.approx(last[f"{device_class}.node_max"] * 100, abs=1e-3)
    shares = sorted(grid[:, -1])
    assert shares[len(shares) // 2] == pytest.approx(last[f"{device_class}.node_p50"] * 100, abs=1e-3)
    assert np.isnan(grid[-1, 0]) and not np.isnan(grid[-1, -1])  # the node that joined later


def test_report_of_a_large_cluster_has_no_heatmaps():
    large = dataclasses.replace(synthetic.result(), per_node=[])
    page = Page(report.run_html(large))
    assert not [f for f in page.figures if f.startswith("plot-per-node")]
    assert "plot-utilisation-ssd" in page.figures


def test_run_that_stopped_early_says_why():
    failed = synthetic.result(samples=10, error="RuntimeError at t=3600.0s: lvmd exploded")
    text = report.run_html(failed)
    assert '<section id="error"' in text and "lvmd exploded" in text
    assert_plots_drawn(Page(text), {f: "any" for f in RUN_PLOTS})


def test_run_with_no_samples_still_has_every_figure():
    empty = dataclasses.replace(synthetic.result(), series=[], per_node=[])
    page = Page(report.run_html(empty))
    assert set(page.figures) == {f for f in RUN_PLOTS if not f.startswith("plot-per-node")}


def test_text_from_the_run_is_escaped_and_never_parsed_as_markup_or_math():
    hostile = synthetic.result(name=HOSTILE, extra_reasons={HOSTILE: 3, r"quota $\frac$ exceeded": 2})
    text = report.run_html(hostile)
    page = Page(text)
    assert "script" not in page.tags and "img" not in page.tags
    assert_self_contained(page)
    assert HOSTILE in page.cells  # shown as text, in the reasons table
    assert r"quota $\frac$ exceeded" in page.cells


def test_class_names_that_slug_alike_get_distinct_figure_ids():
    odd = synthetic.result(classes=("fast.ssd", "fast-ssd"), per_node=False)
    ids = set(Page(report.run_html(odd)).figures)
    assert {"plot-utilisation-fast-ssd", "plot-utilisation-fast-ssd-2"} <= ids


def test_svg_ids_are_unique_in_the_page(run_report):
    ids = re.findall(r'\sid="([^"]+)"', run_report.read_text())
    assert len(ids) == len(set(ids))


def test_thinned_rates_keep_every_failed_attempt():
    series = synthetic.result(samples=5000, nodes=2, classes=("ssd",), per_node=False).series
    idx = plots._thin(len(series))
    assert len(idx) <= plots.MAX_POINTS + 1
    _, rates = plots._rates(series, "failed_attempts", idx)
    dt = np.diff(np.array([series[i]["t"] for i in idx]))
    assert float(np.sum(rates * dt / 3600.0)) == pytest.approx(
        series[-1]["failed_attempts"] - series[0]["failed_attempts"]
    )


# --- comparison, plan, sweep ---
def test_comparison_puts_runs_side_by_side_and_overlays_their_series(tmp_path):
    runs = synthetic.labelled()
    page = Page(report.write_comparison(runs, tmp_path / "compare.html").read_text())
    assert_plots_drawn(page, COMPARISON_PLOTS)
    assert_self_contained(page)
    assert page.headers[5:8] == ["measure", "spread", "pack"]
    assert page.cells[:5] == ["spread", "default", "extender", "1", ""]  # label, then the run's scenario, mode, seed
    failed = [
        f"{r.summary['pods']['failed']} ({r.summary['pods']['failure_rate']:.2%} of {r.summary['pods']['judged']})"
        for _, r in runs
    ]
    row = page.cells.index("pods failed (not bound within SLO)")
    assert page.cells[row + 1 : row + 3] == failed
    assert "volume node affinity conflict" in page.cells


def test_comparison_of_many_runs_draws_one_line_per_run_and_measure():
    runs = [(f"seed={seed}", synthetic.result(seed=seed, samples=40, per_node=False)) for seed in range(1, 6)]
    page = Page(report.comparison_html(runs))
    assert_plots_drawn(page, dict.fromkeys(COMPARISON_PLOTS, "any"))
    caption = page.figures["plot-utilisation-ssd"].caption
    assert caption.startswith("Class ssd: bytes used by the class's volumes as a share")
    assert "each run's cluster total." in page.figures["plot-utilisation-ssd"].caption
    assert page.figures["plot-pods"].caption.startswith("Pods failed")


@pytest.mark.parametrize(
    "runs",
    [
        pytest.param([], id="none"),
        pytest.param([("a", synthetic.result()), ("a", synthetic.result())], id="same-label"),
    ],
)
def test_comparison_refuses_no_runs_or_repeated_labels(runs, tmp_path):
    with pytest.raises(ValueError):
        report.write_comparison(runs, tmp_path / "x.html")


def test_plan_shows_the_curve_the_target_and_the_chosen_size(tmp_path):
    path = report.write_plan(synthetic.plan_curve()[::-1], 0.02, 12, tmp_path / "plan.html", runs=synthetic.labelled())
    text = path.read_text()
    page = Page(text)
    assert_plots_drawn(page, {"plot-plan-curve": "any", **COMPARISON_PLOTS})
    assert_self_contained(page)
    assert "target: at most 2.00% of pods failed; chosen: 12 nodes." in text
    chosen = re.search(r'<tr class="chosen">(.*?)</tr>', text)
    assert chosen is not None and chosen.group(1).startswith("<td>12</td>")
    assert page.cells[: 6 * 4 : 6] == ["8", "10", "12", "14"]  # sorted by node count


def test_plan_without_a_size_that_meets_the_target_says_so():
    text = report.plan_html([p for p in synthetic.plan_curve() if not p.meets_target], 0.02, None)
    assert "no size tested meets the target" in text and '<tr class="chosen">' not in text
    assert set(Page(text).figures) == {"plot-plan-curve"}


def test_sweep_lists_every_combination_with_its_headline_figures(tmp_path):
    rows = [
        {"nodes": 10, "extender mode": "spread", **report.headline(synthetic.result(seed=1))},
        {"nodes": 12, "extender mode": "pack", "overprovision": 4.0, **report.headline(synthetic.result(seed=2))},
    ]
    page = Page(report.write_sweep(rows, tmp_path / "sweep.html").read_text())
    assert page.headers[:3] == ["nodes", "extender mode", "pods failed"]
    assert page.headers[-1] == "overprovision"
    assert len(page.cells) == 2 * len(page.headers)
    assert page.cells[len(page.headers) - 1] == "—" and page.cells[-1] == "4"
    assert_self_contained(page)
