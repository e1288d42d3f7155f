"""The fidelity view of the report (simulator/report_fidelity.py): what it shows, and that headless Chromium
renders it offline with its plot drawn (tests/sim/report_page.py reads the page)."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator import fidelity, report_fidelity
from tests.sim.report_page import Page, assert_plots_drawn, assert_self_contained, render

SIM = fidelity.Outcome(
    {("ns", "c1"): "a", ("ns", "c2"): "b", ("ns", "c3"): "a", ("ns", "big"): None},
    {("ns", "c1"): ("a",), ("ns", "c2"): ("b",), ("ns", "c3"): ("a", "b"), ("ns", "big"): ()},
    {("a", "ssd"): 5 << 30, ("b", "ssd"): 7 << 30, ("b", "ssd-thin"): 9 << 30},
    1,
)
BLUE, ORANGE = "fill: #1f77b4", "fill: #ff7f0e"  # matplotlib's C0 and C1: the simulator's bars, the real plane's


def write(real: fidelity.Outcome, path: Path) -> Path:
    agreement = fidelity.compare(SIM, real)
    return report_fidelity.write(agreement, SIM, real, path, title="both", facts=[("trace", "t.jsonl: 4 events")])


def test_the_view_shows_the_agreement_the_placements_and_the_free_bytes(tmp_path: Path) -> None:
    page = Page(write(SIM, tmp_path / "same.html").read_text())
    assert_plots_drawn(page, {"plot-placements": "any"})
    bars = page.figures["plot-placements"].styles
    assert sum(BLUE in s for s in bars) >= 2 and sum(ORANGE in s for s in bars) >= 2  # a bar per node and world
    cells = page.cells
    assert "t.jsonl: 4 events" in cells
    assert cells[cells.index("unique decisions: same node") + 1] == "3 / 3"  # c1, c2, and big placed nowhere
    assert cells[cells.index("tied decisions: real pick in the simulated tied set") + 1] == "1 / 1"
    assert cells[cells.index("VGs with equal free bytes") + 1] == "3 / 3"
    row = cells.index("b ssd-thin")
    assert cells[row : row + 4] == ["b ssd-thin", str(9 << 30), str(9 << 30), "yes"]
    assert "the worlds agree" in write(SIM, tmp_path / "again.html").read_text()
    assert "chi-square homogeneity of per-node placements" in cells
    assert "the distribution test's simulator side (homogeneity)" in page.headers
    row = cells.index("a")  # the per-node table: simulator, real, the simulator's side of the test
    assert cells[row : row + 4] == ["a", "2", "2", "2"]


def test_the_view_lists_every_disagreement(tmp_path: Path) -> None:
    real = fidelity.Outcome({**SIM.nodes, ("ns", "c2"): "a"}, {}, {**SIM.free, ("a", "ssd"): 1}, 1)
    text = write(real, tmp_path / "differs.html").read_text()
    assert "the worlds DISAGREE" in text
    assert '<section id="mismatches" class="error">' in text
    assert "claim ns/c2: simulated b (tied [&#x27;b&#x27;]), real a" in text
    assert "a ssd: 5368709120 free bytes simulated, 1 real" in text


@pytest.mark.slow
def test_chromium_renders_the_fidelity_view_offline(chromium: str, tmp_path: Path) -> None:
    dom, requests, _ = render(chromium, write(SIM, tmp_path / "view.html"), tmp_path)
    assert requests == []
    assert_plots_drawn(dom, {"plot-placements": "any"})
    assert_self_contained(dom)
    assert "unique decisions: same node" in dom.cells
