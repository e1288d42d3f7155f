"""The fidelity view of the simulator's HTML report: one trace replayed by the simulator and by the real control
plane, side by side (docs/fidelity.md). Written by tests/e2e/test_fidelity_scale.py next to its run; one
self-contained page like the other reports (``simulator.report``), checked by headless Chromium in
tests/sim/test_report_fidelity.py."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from simulator import fidelity, plots, report


def measures(agreement: fidelity.Agreement) -> list[tuple[str, object]]:
    """The agreement's figures as (measure, value) rows: the page's table and ``topolvm-sim fidelity``'s."""
    d = agreement.distribution
    return [
        ("claims", agreement.claims),
        ("claims compared", agreement.compared),
        ("unique decisions: same node", f"{agreement.unique_same} / {agreement.unique}"),
        ("tied decisions: real pick in the simulated tied set", f"{agreement.in_tied_set - agreement.unique_same}"
         f" / {agreement.compared - agreement.unique}"),
        ("same node (all compared claims)", f"{agreement.same_node} / {agreement.compared}"),
        ("VGs with equal free bytes", f"{agreement.vgs_equal} / {agreement.vgs}"),
        ("pods never placed (simulated, real)", f"{agreement.unplaced[0]}, {agreement.unplaced[1]}"),
        ("first tied pick that went elsewhere", agreement.diverged_at or None),
        (f"chi-square {d.test} of per-node placements", f"{d.statistic:.4g} on {d.dof} degrees of freedom"),
        (f"p-value (agree at p >= {agreement.threshold})", d.p_value),
    ]  # fmt: skip


def fidelity_html(
    agreement: fidelity.Agreement,
    simulated: fidelity.Outcome,
    real: fidelity.Outcome,
    *,
    title: str,
    facts: Sequence[tuple[str, object]] = (),
) -> str:
    """``facts``: what the page should restate about the run (the trace, the mode, how long each world took)."""
    page = report._Page(f"topolvm-sim fidelity: {title}")
    page.add("h1", f"Fidelity: {title}")
    verdict = "the worlds agree" if agreement.ok else "the worlds DISAGREE"
    page.add("p", f"{verdict} (docs/fidelity.md says what is compared and why)", class_="meta")
    page.add("h2", "Agreement")
    d = agreement.distribution
    page.table(("measure", "value"), [*facts, *measures(agreement)])
    if agreement.mismatches:
        page.raw('<section id="mismatches" class="error">')
        page.add("h2", "Disagreements")
        page.add("pre", "\n".join(agreement.mismatches))
        page.raw("</section>")
    counts = [("simulator", simulated.per_node()), ("real control plane", real.per_node())]
    page.add("h2", "Placements per node")
    page.figure(
        "placements",
        "Claims placed on each node over the whole trace, by the simulator and by the real control plane.",
        lambda p: plots.placements(counts, p),
    )
    reference = agreement.reference_per_node
    nodes = sorted(set(counts[0][1]) | set(counts[1][1]) | set(reference))
    page.table(
        ("node", "simulator", "real", f"the distribution test's simulator side ({d.test})"),
        [(n, counts[0][1].get(n, 0), counts[1][1].get(n, 0), f"{reference.get(n, 0.0):.4g}") for n in nodes],
    )
    page.add("h2", "Free bytes at the end, per node and device class")
    vgs = sorted(set(simulated.free) | set(real.free))
    free = [(f"{n} {c}", simulated.free.get((n, c)), real.free.get((n, c))) for n, c in vgs]
    page.table(("node / class", "simulator", "real", "equal"), [(*row, row[1] == row[2]) for row in free])
    page.add("h2", "Per claim")
    claims = [
        (f"{key[0]}/{key[1]}", node, " ".join(simulated.tied.get(key, ())), real.nodes.get(key))
        for key, node in simulated.nodes.items()
    ]
    page.table(("claim", "simulator", "tied set", "real"), claims)
    return page.text()


def write(
    agreement: fidelity.Agreement,
    simulated: fidelity.Outcome,
    real: fidelity.Outcome,
    path: Path,
    *,
    title: str,
    facts: Sequence[tuple[str, object]] = (),
) -> Path:
    return report._write_text(fidelity_html(agreement, simulated, real, title=title, facts=facts), path)
