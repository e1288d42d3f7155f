"""Self-contained HTML reports people read: one run, runs side by side, a capacity plan, a parameter sweep.

Called by ``simulator.cli`` (``report.html`` next to ``summary.json``). Each page is one file that opens offline:
plots are inline SVG (``simulator.plots``), styles are inline, there is no script, and a Content-Security-Policy
forbids fetching anything. Like ``summary.json``, a page is deterministic for a seed: it holds no wall-clock
figure, so two runs of the same scenario and seed give the same bytes. Every plot is an ``<svg>`` in a
``<figure>`` with a stable id (``plot-utilisation-ssd``) and a caption saying what it shows.
"""

from __future__ import annotations

import dataclasses
import functools
import html
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from simulator import outputs, plots, report_inputs, run, units

Labelled = Sequence[tuple[str, run.Result]]
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; color: #222; max-width: 70rem; margin: 1.5rem auto; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .25rem; } h2 { border-bottom: 1px solid #ccc; margin-top: 2rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; }
th, td { padding: .2rem .6rem; border-bottom: 1px solid #eee; }
th { text-align: left; background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1rem 0 1.5rem; } figure svg { max-width: 100%; height: auto; }
figure svg image { image-rendering: pixelated; } figcaption { color: #555; font-size: .9rem; }
.meta { color: #555; } .error { background: #fff0f0; border-left: 4px solid #c00; padding: .2rem 1rem; }
pre { white-space: pre-wrap; font-size: .85rem; } tr.chosen td { font-weight: bold; background: #eef8ee; }
"""


@dataclasses.dataclass(frozen=True)
class PlanPoint:
    """One cluster size of a capacity plan, simulated under several seeds."""

    node_count: int
    failure_rates: list[float]  # one per seed: pods failed / pods judged
    mean: float
    upper: float  # upper confidence bound of the mean
    meets_target: bool


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


class _Page:
    """An HTML document built in order; every piece of text that goes in is escaped here."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.parts: list[str] = []
        self.ids: set[str] = set()

    def add(self, tag: str, text: str, **attrs: str) -> None:
        self.parts.append(f"<{tag}{_attrs(attrs)}>{html.escape(text)}</{tag}>")

    def raw(self, markup: str) -> None:
        self.parts.append(markup)

    def table(self, header: Sequence[str], rows: Iterable[Sequence[object]], *, marked: int | None = None) -> None:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        lines = [f"<table><thead><tr>{head}</tr></thead><tbody>"]
        for i, row in enumerate(rows):
            cells = "".join(
                f"<td>{html.escape(_cell(v))}</td>" if j == 0 else f'<td class="num">{html.escape(_cell(v))}</td>'
                for j, v in enumerate(row)
            )
            lines.append(f'<tr class="chosen">{cells}</tr>' if i == marked else f"<tr>{cells}</tr>")
        lines.append("</tbody></table>")
        self.parts.append("\n".join(lines))

    def figure(self, name: str, caption: str, draw: Callable[[str], str]) -> None:
        """A plot with id ``plot-<name>``; ``draw`` gets the id to prefix its SVG's own ids with."""
        base = f"plot-{_slug(name)}"
        figure_id, n = base, 1
        while figure_id in self.ids:
            n += 1
            figure_id = f"{base}-{n}"
        self.ids.add(figure_id)
        svg = draw(figure_id).replace("<svg ", f'<svg role="img" aria-label="{html.escape(caption)}" ', 1)
        self.parts.append(f'<figure id="{figure_id}">\n{svg}\n<figcaption>{html.escape(caption)}</figcaption></figure>')

    def text(self) -> str:
        return "\n".join(
            [
                "<!DOCTYPE html>",
                '<html lang="en"><head><meta charset="utf-8">',
                f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
                '<meta name="viewport" content="width=device-width, initial-scale=1">',
                f"<title>{html.escape(self.title)}</title><style>{STYLE}</style></head><body>",
                *self.parts,
                "</body></html>",
                "",
            ]
        )


def _attrs(attrs: dict[str, str]) -> str:
    return "".join(f' {name.rstrip("_")}="{html.escape(value)}"' for name, value in attrs.items())


def _cell(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _write_text(text: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _classes(results: Iterable[run.Result]) -> list[str]:
    """Device classes in the order the runs list them: the summary's first, then any only the series has."""
    found: dict[str, None] = {}
    for result in results:
        found.update(dict.fromkeys(result.summary.get("capacity", {})))
        for row in result.series:
            found.update(dict.fromkeys(k.removesuffix(".utilization") for k in row if k.endswith(".utilization")))
    return list(found)


# --- one run ---
def run_html(result: run.Result) -> str:
    s = result.summary
    page = _Page(f"topolvm-sim: {result.name}")
    page.add("h1", f"Simulation report: {result.name}")
    page.add("p", outputs.title(s), class_="meta")
    page.add("p", f"decisions digest (same seed, same digest): {s.get('decisions_sha256', '')}", class_="meta")
    if result.error:
        page.raw('<section id="error" class="error">')
        page.add("h2", "The run stopped early")
        page.add("pre", result.error)
        page.raw("</section>")
    page.add("h2", "Summary")
    page.table(("measure", "value"), outputs.rows(s))
    if result.inputs:
        report_inputs.section(page, result.inputs)
    runs: plots.Runs = [(result.name, result.series)]
    classes = _classes([result])
    _capacity(page, runs, classes)
    page.add("h2", "Pods")
    page.figure(
        "pods",
        "Pods running, pending, and failed (waited longer than the scheduling SLO) over simulated time.",
        lambda p: plots.pods(runs, p),
    )
    page.add("h2", "Scheduling failures")
    page.figure(
        "failed-attempts",
        "Scheduling attempts per hour of simulated time: all of them, and those that found no node.",
        lambda p: plots.failed_attempts(runs, p),
    )
    reasons: dict[str, int] = s["scheduling"]["reasons"]
    page.figure(
        "failure-reasons",
        "Why attempts failed: for each reason, how many nodes it ruled out, summed over all "
        "failed attempts (the most frequent first).",
        lambda p: plots.reasons(reasons, p),
    )
    if reasons:
        page.table(("reason", "node failures"), sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:30])
    errors = s.get("workload_errors") or []
    if errors:
        page.add("h2", "Workload errors")
        page.raw("<ul>" + "".join(f"<li>{html.escape(str(e))}</li>" for e in errors) + "</ul>")
    _fragmentation(page, runs, classes)
    if result.per_node:
        page.add("h2", "Per node")
        for device_class in sorted({row[2] for row in result.per_node}):
            page.figure(
                f"per-node-{device_class}",
                f"Class {device_class}: share of each node's capacity that is not free (its volumes and reserved "
                "bytes; rows, sorted by name) over simulated time, thin classes at their overprovisioned size; "
                "blank while a node does not exist.",
                functools.partial(plots.heatmap, result.per_node, result.series, device_class),
            )
    return page.text()


def _capacity(page: _Page, runs: plots.Runs, classes: Sequence[str]) -> None:
    page.add("h2", "Capacity")
    if len(runs) == 1:
        lines = "the cluster's total and the spread across nodes (median, 90th percentile, fullest node)"
    elif len(runs) <= plots.FEW_RUNS:
        lines = "each run's cluster total (solid) and fullest node (dashed)"
    else:
        lines = "each run's cluster total"
    for device_class in classes:
        caption = (
            f"Class {device_class}: bytes used by the class's volumes as a share of used + free (thin pools, "
            f"spare and other reserved bytes left out) over simulated time: {lines}. Thin classes count their "
            "overprovisioned size."
        )
        page.figure(f"utilisation-{device_class}", caption, functools.partial(plots.utilisation, runs, device_class))


def _fragmentation(page: _Page, runs: plots.Runs, classes: Sequence[str]) -> None:
    page.add("h2", "Fragmentation")
    for device_class in classes:
        caption = (
            f"Class {device_class}: free bytes stranded on nodes whose free space is below the class's "
            "median volume request, in bytes and as a share of all free bytes."
        )
        page.figure(
            f"fragmentation-{device_class}", caption, functools.partial(plots.fragmentation, runs, device_class)
        )


def write_run(result: run.Result, path: Path) -> Path:
    return _write_text(run_html(result), path)


# --- runs side by side ---
def _check_labels(results: Labelled) -> None:
    labels = [label for label, _ in results]
    if not labels:
        raise ValueError("nothing to compare: no runs")
    if len(set(labels)) != len(labels):
        raise ValueError(f"run labels must be distinct, got {labels}")


def _side_by_side(page: _Page, results: Labelled) -> None:
    """The runs' summary tables as columns, then their series overlaid."""
    page.table(
        ("run", "scenario", "mode", "seed", "error"),
        [
            (label, r.summary.get("scenario"), r.summary.get("mode"), r.seed, "stopped early" if r.error else "")
            for label, r in results
        ],
    )
    measures: dict[str, dict[str, str]] = {}
    for label, result in results:
        for measure, value in outputs.rows(result.summary):
            measures.setdefault(measure, {})[label] = value
    labels = [label for label, _ in results]
    page.add("h2", "Summary")
    page.table(("measure", *labels), [(m, *(values.get(label) for label in labels)) for m, values in measures.items()])
    runs: plots.Runs = [(label, r.series) for label, r in results]
    classes = _classes(r for _, r in results)
    _capacity(page, runs, classes)
    page.add("h2", "Pods and scheduling failures")
    page.figure(
        "pods",
        "Pods running (solid), pending (dotted) and failed (dashed) over simulated time, per run."
        if len(runs) <= plots.FEW_RUNS
        else "Pods failed (waited longer than the scheduling SLO) over simulated time, per run.",
        lambda p: plots.pods(runs, p),
    )
    page.figure(
        "failed-attempts",
        "Scheduling attempts that found no node, per hour of simulated time, per run.",
        lambda p: plots.failed_attempts(runs, p),
    )
    totals: dict[str, dict[str, int]] = {}
    for label, result in results:
        for reason, count in result.summary["scheduling"]["reasons"].items():
            totals.setdefault(reason, {})[label] = count
    ranked = sorted(totals.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))[:20]
    if ranked:
        page.table(
            ("reason (node failures)", *labels), [(r, *(c.get(label, 0) for label in labels)) for r, c in ranked]
        )
    _fragmentation(page, runs, classes)


def comparison_html(results: Labelled, *, title: str = "Comparison") -> str:
    _check_labels(results)
    page = _Page(f"topolvm-sim: {title}")
    page.add("h1", title)
    page.add("p", ", ".join(label for label, _ in results), class_="meta")
    _side_by_side(page, results)
    return page.text()


def write_comparison(results: Labelled, path: Path, *, title: str = "Comparison") -> Path:
    return _write_text(comparison_html(results, title=title), path)


# --- a capacity plan ---
def plan_html(
    curve: Sequence[PlanPoint], target: float, chosen: int | None, runs: Labelled = (), *, title: str = "Capacity plan"
) -> str:
    points = sorted(curve, key=lambda p: p.node_count)
    page = _Page(f"topolvm-sim: {title}")
    page.add("h1", title)
    if runs:
        _check_labels(runs)
    if chosen is not None:
        verdict = f"chosen: {chosen} nodes"
    elif any(q.meets_target for q in points):
        verdict = "no size chosen"
    else:
        verdict = "no size tested meets the target"
    page.add("p", f"target: at most {target:.2%} of pods failed; {verdict}.", class_="meta")
    page.add("h2", "Plan curve")
    page.figure(
        "plan-curve",
        "Share of pods failed against cluster size: each seed's run (grey dots), their mean "
        "(line), its upper confidence bound (dashed), the target (dotted) and the chosen size.",
        lambda p: plots.plan_curve(points, target, chosen, p),
    )
    marked = next((i for i, q in enumerate(points) if q.node_count == chosen), None)
    page.table(
        ("nodes", "seeds", "failed mean", "upper bound", "failed per seed", "meets target"),
        [
            (
                q.node_count,
                len(q.failure_rates),
                f"{q.mean:.3%}",
                f"{q.upper:.3%}",
                " ".join(f"{r:.2%}" for r in q.failure_rates),
                q.meets_target,
            )
            for q in points
        ],
        marked=marked,
    )
    if runs:
        page.add("h2", "Runs")
        _side_by_side(page, runs)
    return page.text()


def write_plan(
    curve: Sequence[PlanPoint],
    target: float,
    chosen: int | None,
    path: Path,
    runs: Labelled = (),
    *,
    title: str = "Capacity plan",
) -> Path:
    return _write_text(plan_html(curve, target, chosen, runs, title=title), path)


# --- a parameter sweep ---
def headline(result: run.Result) -> dict[str, Any]:
    """The figures a sweep's table shows for one run, keyed by column name."""
    s = result.summary
    row: dict[str, Any] = {
        "pods failed": s["pods"]["failure_rate"],
        "wait p99 (s)": s["pods"]["wait_p99_s"],
        "failed attempts": s["scheduling"]["failed_attempts"],
    }
    for name, c in s["capacity"].items():
        row[f"{name} peak used"] = c["utilization_peak"]
        row[f"{name} stranded at end"] = c["fragmentation_end"]
    first = s["time_to_exhaustion_s"]
    row["first storage failure"] = None if first is None else units.text_of_seconds(first)
    row["error"] = "stopped early" if result.error else None
    return row


def sweep_html(rows: Sequence[dict[str, Any]], *, title: str = "Parameter sweep") -> str:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    page = _Page(f"topolvm-sim: {title}")
    page.add("h1", title)
    page.add("p", f"{len(rows)} parameter combinations", class_="meta")
    page.table(list(columns), [[row.get(c) for c in columns] for row in rows])
    return page.text()


def write_sweep(rows: Sequence[dict[str, Any]], path: Path, *, title: str = "Parameter sweep") -> Path:
    return _write_text(sweep_html(rows, title=title), path)
