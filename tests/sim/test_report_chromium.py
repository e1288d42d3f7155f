"""The HTML reports rendered by headless Chromium with the network unreachable: every plot of the run, comparison
and plan pages is in the DOM Chromium builds, nothing is fetched, and the plots are painted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpl_image

from simulator import report
from tests.sim import synthetic
from tests.sim.report_page import COMPARISON_PLOTS, RUN_PLOTS, assert_plots_drawn, assert_self_contained, render
from tests.support import browser


@pytest.fixture(scope="module")
def run_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return report.write_run(synthetic.result(), tmp_path_factory.mktemp("run-report") / "report.html")


@pytest.mark.slow
def test_offline_check_sees_a_page_that_fetches(chromium, tmp_path):
    page = tmp_path / "fetches.html"
    page.write_text(
        '<!DOCTYPE html><html><head><link rel="stylesheet" href="https://cdn.example.com/plots.css"></head>'
        '<body><img src="http://example.com/plot.png"></body></html>'
    )
    _, requests, proxied = render(chromium, page, tmp_path)
    assert sorted(requests) == ["http://example.com/plot.png", "https://cdn.example.com/plots.css"]
    assert {"GET http://example.com/plot.png", "CONNECT cdn.example.com:443"} <= set(proxied)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["run", "comparison", "plan"])
def test_chromium_renders_every_plot_offline(chromium, kind, run_report, tmp_path):
    if kind == "run":
        path, expected = run_report, RUN_PLOTS
    elif kind == "comparison":
        path, expected = report.write_comparison(synthetic.labelled(), tmp_path / "compare.html"), COMPARISON_PLOTS
    else:
        path = report.write_plan(synthetic.plan_curve(), 0.02, 12, tmp_path / "plan.html", runs=synthetic.labelled())
        expected = {"plot-plan-curve": "any", **COMPARISON_PLOTS}
    dom, requests, _ = render(chromium, path, tmp_path)
    assert requests == []
    assert_plots_drawn(dom, expected)
    assert_self_contained(dom)


@pytest.mark.slow
def test_chromium_paints_the_plots(chromium, run_report, tmp_path):
    with browser.recording_proxy() as proxy:
        shot = browser.screenshot(
            chromium, run_report, proxy, tmp_path / "profile", tmp_path / "shot.png", (1100, 6000)
        )
    pixels = (mpl_image.imread(shot)[:, :, :3] * 255).round()

    def painted(rgb: tuple[int, int, int]) -> int:
        return int(np.sum(np.all(np.abs(pixels - np.array(rgb)) <= 8, axis=2)))

    assert painted((31, 119, 180)) > 2000  # C0: the utilisation totals and the running pods
    assert painted((214, 39, 40)) > 2000  # C3: the failure-reason bars and failed attempts
    assert painted((253, 231, 37)) + painted((68, 1, 84)) > 500  # viridis' ends: the per-node heatmaps
