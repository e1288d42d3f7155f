"""The report's plots as inline SVG text: capacity, pods, failed attempts, fragmentation, per-node heatmaps and
the plan curve, each drawn for one run or overlaid for several labelled runs.

Called by ``simulator.report``. Every plot is a matplotlib ``Figure`` saved as SVG under fixed settings
(Agg backend, a fixed ``svg.hashsalt``, text as paths, no date in the metadata) so the same data gives the same
bytes; the SVG's ids get a per-figure prefix because many SVGs share one HTML document's id space.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import matplotlib
import numpy as np

matplotlib.use("Agg")  # never a display, whoever imports this first

from matplotlib import ticker
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.typing import LegendLocType, RcKeyType

Series = Sequence[dict[str, Any]]
Runs = Sequence[tuple[str, Series]]  # (label, series), one entry for a single run
PerNode = Sequence[tuple[float, str, str, int, int]]  # (t, node, device class, size bytes, free bytes)

MAX_POINTS = 600  # samples per line; longer series are thinned (rates stay exact: see _rates)
MAX_COLUMNS = 400  # time columns of a heatmap
WIDTH = 9.0  # inches
FEW_RUNS = 3  # overlays of more runs than this show one line per run and measure, the rest would be a tangle
RC: dict[RcKeyType, Any] = {
    "svg.hashsalt": "topolvm-sim",  # clip-path and marker ids come from hashes: fixed salt, fixed ids
    "svg.fonttype": "path",  # glyphs drawn as paths: the page needs no fonts and renders the same everywhere
    "text.parse_math": False,  # labels come from scenarios and runs; a '$' in them is just a dollar sign
    "axes.grid": True,
    "grid.alpha": 0.3,
    "font.size": 9,
}
_ID = re.compile(r'(\sid=")([^"]+)"')
_REF = re.compile(r'(url\(#|href="#)([^)"]+)')


@contextmanager
def _style() -> Iterator[None]:
    with matplotlib.rc_context(RC):
        yield


def _svg(fig: Figure, prefix: str) -> str:
    """The figure as an ``<svg>`` element ready to inline: no XML prolog, metadata or comments, ids prefixed."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None}, bbox_inches="tight")
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.DOTALL)
    text = re.sub(r"<!--.*?-->\s*", "", text, flags=re.DOTALL)
    text = _ID.sub(lambda m: f'{m.group(1)}{prefix}-{m.group(2)}"', text)
    return _REF.sub(lambda m: f"{m.group(1)}{prefix}-{m.group(2)}", text).strip()


def _thin(count: int, limit: int = MAX_POINTS) -> list[int]:
    """Evenly spaced indices of at most about ``limit`` samples, always including the last."""
    if count <= limit:
        return list(range(count))
    step = math.ceil(count / limit)
    indices = list(range(0, count, step))
    if indices[-1] != count - 1:
        indices.append(count - 1)
    return indices


def _column(series: Series, key: str, indices: Sequence[int]) -> np.ndarray[Any, np.dtype[np.float64]]:
    """One column of the thinned series; a sample without it (a class not there yet) is a gap in the line."""
    values = [series[i].get(key) for i in indices]
    return np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)


def time_unit(end: float) -> tuple[float, str]:
    """(seconds per unit, unit name) that keeps a time axis ending at ``end`` seconds readable."""
    for limit, factor, name in ((2 * 3600.0, 60.0, "minutes"), (3 * 86400.0, 3600.0, "hours")):
        if end <= limit:
            return factor, name
    return 86400.0, "days"


def byte_unit(largest: float) -> tuple[float, str]:
    for factor, name in ((1 << 50, "PiB"), (1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB")):
        if largest >= factor:
            return float(factor), name
    return 1.0, "bytes"


def _end(runs: Runs) -> float:
    return max((float(s[-1]["t"]) for _, s in runs if s), default=0.0)


def _figure(height: float, rows: int = 1) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(WIDTH, height))
    axes = [fig.add_subplot(rows, 1, i + 1) for i in range(rows)]
    for ax in axes[1:]:
        ax.sharex(axes[0])
    return fig, axes


def _color(i: int) -> str:
    return f"C{i % 10}"


def _legend(ax: Axes, loc: LegendLocType = "upper left") -> None:
    """Inside the axes; below them, in columns, when there are too many entries to leave the lines visible."""
    entries = len(ax.get_legend_handles_labels()[0])
    if entries > 6:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=3, fontsize=8, frameon=False)
    elif entries:
        ax.legend(loc=loc, fontsize=8, framealpha=0.8)


def utilisation(runs: Runs, device_class: str, prefix: str) -> str:
    """Used / size of the class over time; one run also shows the spread across nodes (p50, p90, max)."""
    with _style():
        fig, (ax,) = _figure(3.2)
        factor, unit = time_unit(_end(runs))
        for i, (label, series) in enumerate(runs):
            idx = _thin(len(series))
            t = _column(series, "t", idx) / factor
            total = _column(series, f"{device_class}.utilization", idx) * 100
            if len(runs) == 1:
                ax.plot(t, total, color="C0", linewidth=2, label="cluster total")
                for key, color, style in (("node_p50", "C1", "-"), ("node_p90", "C2", "-"), ("node_max", "C3", "--")):
                    values = _column(series, f"{device_class}.{key}", idx) * 100
                    ax.plot(t, values, color=color, linestyle=style, linewidth=1, label=f"per node {key[5:]}")
            else:
                ax.plot(t, total, color=_color(i), linewidth=2, label=f"{label}: total")
                if len(runs) <= FEW_RUNS:
                    values = _column(series, f"{device_class}.node_max", idx) * 100
                    ax.plot(t, values, color=_color(i), linestyle="--", linewidth=1, label=f"{label}: node max")
        ax.set_ylim(0, 105)
        ax.set_ylabel(f"{device_class} used (% of size)")
        ax.set_xlabel(f"simulated time ({unit})")
        _legend(ax)
        return _svg(fig, prefix)


def pods(runs: Runs, prefix: str) -> str:
    """Pods pending, running and failed (not bound within the SLO) at each sample; only failed ones when
    overlaying more than ``FEW_RUNS`` runs."""
    with _style():
        fig, (ax,) = _figure(3.0)
        factor, unit = time_unit(_end(runs))
        styles = [("pods_running", "running", "-"), ("pods_pending", "pending", ":"), ("pods_failed", "failed", "--")]
        if len(runs) > FEW_RUNS:
            styles = [("pods_failed", "failed", "-")]
        for i, (label, series) in enumerate(runs):
            idx = _thin(len(series))
            t = _column(series, "t", idx) / factor
            for j, (key, name, style) in enumerate(styles):
                color = _color(j) if len(runs) == 1 else _color(i)
                text = name if len(runs) == 1 else f"{label}: {name}"
                ax.plot(t, _column(series, key, idx), color=color, linestyle=style, label=text)
        ax.set_ylim(bottom=0)
        ax.set_ylabel("pods")
        ax.set_xlabel(f"simulated time ({unit})")
        _legend(ax)
        return _svg(fig, prefix)


def _rates(series: Series, key: str, idx: Sequence[int]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Per-hour rate of a cumulative counter between thinned samples: (interval ends, rates). Differencing the
    thinned counter keeps every event, however coarse the thinning."""
    t = _column(series, "t", idx)
    counts = _column(series, key, idx)
    if len(t) < 2:
        return t[:0], t[:0]
    dt = np.diff(t)
    with np.errstate(divide="ignore", invalid="ignore"):
        rates = np.where(dt > 0, np.diff(counts) / dt * 3600.0, 0.0)
    return t[1:], rates


def failed_attempts(runs: Runs, prefix: str) -> str:
    """Scheduling attempts that found no node, per hour of simulated time (one run also shows all attempts)."""
    with _style():
        fig, (ax,) = _figure(3.0)
        factor, unit = time_unit(_end(runs))
        for i, (label, series) in enumerate(runs):
            idx = _thin(len(series))
            t, failed = _rates(series, "failed_attempts", idx)
            if len(runs) == 1:
                t_all, attempts = _rates(series, "attempts", idx)
                ax.step(t_all / factor, attempts, where="pre", color="C7", linewidth=1, label="all attempts")
                ax.step(t / factor, failed, where="pre", color="C3", linewidth=1.5, label="failed attempts")
            else:
                ax.step(t / factor, failed, where="pre", color=_color(i), linewidth=1.5, label=f"{label}: failed")
        ax.set_ylim(bottom=0)
        ax.set_ylabel("attempts per hour")
        ax.set_xlabel(f"simulated time ({unit})")
        _legend(ax)
        return _svg(fig, prefix)


def reasons(counts: dict[str, int], prefix: str, *, top: int = 12) -> str:
    """Why attempts failed: one bar per reason (the most frequent first), the rest summed as "other"."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    shown = ranked[:top]
    rest = sum(count for _, count in ranked[top:])
    if rest:
        shown.append((f"{len(ranked) - top} other reasons", rest))
    with _style():
        fig, (ax,) = _figure(max(1.6, 0.32 * len(shown) + 0.8))
        if shown:
            labels = [_shorten(reason, 80) for reason, _ in shown]
            positions = np.arange(len(shown))
            ax.barh(positions, [count for _, count in shown], color="C3")
            ax.set_yticks(positions, labels)
            ax.invert_yaxis()
        else:
            ax.set_yticks([])
            ax.text(0.5, 0.5, "no failed attempts", transform=ax.transAxes, ha="center", va="center")
        ax.set_xlabel("node failures counted over all attempts")
        return _svg(fig, prefix)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fragmentation(runs: Runs, device_class: str, prefix: str) -> str:
    """Free bytes stranded on nodes with less free space than the class's median request, in bytes (top) and
    as a fraction of all free bytes (bottom)."""
    with _style():
        fig, (top, bottom) = _figure(4.4, rows=2)
        end = _end(runs)
        factor, unit = time_unit(end)
        largest = max((float(r.get(f"{device_class}.stranded") or 0) for _, s in runs for r in s), default=0.0)
        scale, byte_name = byte_unit(largest)
        for i, (label, series) in enumerate(runs):
            idx = _thin(len(series))
            t = _column(series, "t", idx) / factor
            name = "stranded" if len(runs) == 1 else label
            top.plot(t, _column(series, f"{device_class}.stranded", idx) / scale, color=_color(i), label=name)
            bottom.plot(t, _column(series, f"{device_class}.fragmentation", idx) * 100, color=_color(i), label=name)
        top.set_ylabel(f"stranded ({byte_name})")
        top.set_ylim(0, max(1.0, largest / scale * 1.05))  # none stranded: an axis from 0 to 1, not to 0.05
        bottom.set_ylabel("% of free bytes")
        bottom.set_ylim(0, 105)
        bottom.set_xlabel(f"simulated time ({unit})")
        if len(runs) > 1:
            _legend(bottom)
        return _svg(fig, prefix)


def _size_scale(per_node: PerNode, series: Series, device_class: str) -> float:
    """The class's size in the series over the sum of its nodes' sizes in ``per_node`` at the last sample both
    have. The series counts a thin class at its overprovisioned size (what requests are measured against, and
    what its free bytes are reported in) while per-node rows carry the pool's size as lvmd reports it: the
    ratio brings them back to one measure. 1 for thick classes."""
    sizes: dict[float, int] = {}
    for t, _, name, size, _ in per_node:
        if name == device_class:
            sizes[t] = sizes.get(t, 0) + size
    for row in reversed(series):
        raw, total = sizes.get(row["t"]), row.get(f"{device_class}.size")
        if raw and total:
            return float(total) / raw
    return 1.0


def node_grid(
    per_node: PerNode, series: Series, device_class: str
) -> tuple[list[str], list[float], np.ndarray[Any, np.dtype[np.float64]]]:
    """(nodes sorted by name, sample times, % used of each node at each time, NaN where it did not exist), at most
    ``MAX_COLUMNS`` times; sizes on the series' measure (see ``_size_scale``)."""
    scale = _size_scale(per_node, series, device_class)
    rows = [r for r in per_node if r[2] == device_class]
    nodes = sorted({r[1] for r in rows})
    times = sorted({r[0] for r in rows})
    kept = [times[i] for i in _thin(len(times), MAX_COLUMNS)]
    column = {t: j for j, t in enumerate(kept)}
    line = {n: i for i, n in enumerate(nodes)}
    grid = np.full((len(nodes), len(kept)), np.nan)
    for t, node, _, size, free in rows:
        j = column.get(t)
        if j is not None:
            grid[line[node], j] = min(1.0, max(0.0, 1.0 - free / (size * scale))) * 100 if size else 100.0
    return nodes, kept, grid


def heatmap(per_node: PerNode, series: Series, device_class: str, prefix: str) -> str:
    """Used / size of each node of the class (rows, sorted by name) at each sample (columns); blank where a node
    did not exist yet or any more."""
    nodes, kept, grid = node_grid(per_node, series, device_class)
    with _style():
        fig, (ax,) = _figure(min(8.0, max(2.4, 0.14 * len(nodes) + 1.2)))
        factor, unit = time_unit(kept[-1] if kept else 0.0)
        if nodes and kept:
            step = (kept[-1] - kept[0]) / (len(kept) - 1) if len(kept) > 1 else 1.0  # a column spans a sample
            extent = (kept[0] / factor, (kept[-1] + step) / factor, len(nodes) - 0.5, -0.5)
            image = ax.imshow(
                grid, aspect="auto", interpolation="none", cmap="viridis", vmin=0, vmax=100, extent=extent
            )
            fig.colorbar(image, ax=ax, label="used (% of size)", pad=0.01)
        ax.grid(False)
        if len(nodes) <= 40:
            ax.set_yticks(range(len(nodes)), nodes, fontsize=7)
        else:
            ax.set_yticks([])
        ax.set_ylabel(f"nodes ({len(nodes)})")
        ax.set_xlabel(f"simulated time ({unit})")
        return _svg(fig, prefix)


class PlanPoint(Protocol):
    """One cluster size of a capacity plan (``report.PlanPoint`` is one)."""

    @property
    def node_count(self) -> int: ...
    @property
    def failure_rates(self) -> list[float]: ...
    @property
    def mean(self) -> float: ...
    @property
    def upper(self) -> float: ...
    @property
    def meets_target(self) -> bool: ...


def plan_curve(points: Sequence[PlanPoint], target: float, chosen: int | None, prefix: str) -> str:
    """Failure rate against node count: every seed's rate (dots), their mean (line), its upper confidence bound
    (dashed), the target (horizontal) and the chosen size (vertical)."""
    with _style():
        fig, (ax,) = _figure(3.6)
        counts = [p.node_count for p in points]
        for point in points:
            rates = [r * 100 for r in point.failure_rates]
            ax.scatter([point.node_count] * len(rates), rates, s=10, color="C7", alpha=0.6, zorder=2)
        means, uppers = [p.mean * 100 for p in points], [p.upper * 100 for p in points]
        ax.plot(counts, means, color="C0", marker="o", linewidth=2, label="mean over seeds", zorder=3)
        ax.plot(counts, uppers, color="C0", linestyle="--", label="upper confidence bound", zorder=3)
        ok = [p for p in points if p.meets_target]
        if ok:
            ok_uppers = [p.upper * 100 for p in ok]
            ax.scatter([p.node_count for p in ok], ok_uppers, color="C2", zorder=4, label="meets target")
        ax.axhline(target * 100, color="C3", linestyle=":", linewidth=1.5, label=f"target {target:.2%}")
        if chosen is not None:
            ax.axvline(chosen, color="C2", linewidth=1.5, label=f"chosen: {chosen} nodes")
        ax.set_ylim(bottom=0)
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))  # no 4.5 nodes
        ax.set_xlabel("nodes")
        ax.set_ylabel("pods failed (%)")
        _legend(ax, "upper right")
        return _svg(fig, prefix)


def placements(worlds: Sequence[tuple[str, dict[str, int]]], prefix: str) -> str:
    """Claims placed per node over a trace, one bar per world side by side (the fidelity view: the simulator's
    and the real control plane's)."""
    nodes = sorted({node for _, counts in worlds for node in counts})
    width = 0.8 / max(len(worlds), 1)
    with _style():
        fig, (ax,) = _figure(2.6)
        positions = np.arange(len(nodes))
        for i, (label, counts) in enumerate(worlds):
            heights = [counts.get(node, 0) for node in nodes]
            ax.bar(positions + (i - (len(worlds) - 1) / 2) * width, heights, width, color=_color(i), label=label)
        ax.set_xticks(positions, nodes, rotation=90 if len(nodes) > 12 else 0)
        ax.set_ylabel("claims placed")
        _legend(ax)
        return _svg(fig, prefix)
