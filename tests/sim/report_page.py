"""Reading an HTML report back, as the report tests do: its figures (their SVGs' paths and images, captions), every
tag, every reference to another resource and the table cells, from our own HTML or from Chromium's dump of the
DOM; the checks each report's tests make of them; and headless Chromium rendering a page offline."""

from __future__ import annotations

import dataclasses
import html.parser
import re
from pathlib import Path

from tests.support import browser

RUN_PLOTS = {
    "plot-utilisation-ssd": "line",
    "plot-utilisation-thin": "line",
    "plot-pods": "line",
    "plot-failed-attempts": "line",
    "plot-failure-reasons": "bars:2",  # the synthetic run's two reasons
    "plot-fragmentation-ssd": "line",
    "plot-fragmentation-thin": "line",
    "plot-per-node-ssd": "heatmap",
    "plot-per-node-thin": "heatmap",
}
COMPARISON_PLOTS = {
    "plot-utilisation-ssd": "line",
    "plot-utilisation-thin": "line",
    "plot-pods": "line",
    "plot-failed-attempts": "line",
    "plot-fragmentation-ssd": "line",
    "plot-fragmentation-thin": "line",
}
REFERENCE_ATTRIBUTES = {"src", "href", "xlink:href", "srcset", "action", "data", "poster", "background", "formaction"}


@dataclasses.dataclass
class Figure:
    id: str
    svgs: int = 0
    paths: list[str] = dataclasses.field(default_factory=list)
    styles: list[str] = dataclasses.field(default_factory=list)
    images: list[str] = dataclasses.field(default_factory=list)
    caption: str = ""


class Page(html.parser.HTMLParser):
    """Figures (their SVGs' paths and images, captions), every tag, every reference to another resource, table
    cells; from our own HTML or from Chromium's dump of the DOM."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.figures: dict[str, Figure] = {}
        self.tags: set[str] = set()
        self.references: list[str] = []
        self.cells: list[str] = []
        self.headers: list[str] = []
        self._figure: Figure | None = None
        self._text: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        self.tags.add(tag)
        self.references += [value for name, value in values.items() if name in REFERENCE_ATTRIBUTES]
        self.references += re.findall(r"url\(\s*['\"]?([^)'\"]*)", values.get("style", ""))
        if tag == "figure":
            self._figure = Figure(values.get("id", ""))
        elif self._figure is not None and tag == "svg":
            self._figure.svgs += 1
        elif self._figure is not None and tag == "path":
            self._figure.paths.append(values.get("d", ""))
            self._figure.styles.append(values.get("style", ""))
        elif self._figure is not None and tag == "image":
            self._figure.images.append(values.get("xlink:href") or values.get("href", ""))
        if tag in ("figcaption", "td", "th", "style"):
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        text = "".join(self._text or [])
        if tag == "figure" and self._figure is not None:
            self.figures[self._figure.id] = self._figure
            self._figure = None
        elif tag == "figcaption" and self._figure is not None:
            self._figure.caption = text
        elif tag == "td":
            self.cells.append(text)
        elif tag == "th":
            self.headers.append(text)
        elif tag == "style":
            self.references += re.findall(r"url\(\s*['\"]?([^)'\"]*)", text) + re.findall(r"@import", text)
        if tag in ("figcaption", "td", "th", "style"):
            self._text = None


def vertices(d: str) -> int:
    return len(re.findall(r"[MLCQ]", d))


def assert_plots_drawn(page: Page, expected: dict[str, str]) -> None:
    assert set(page.figures) == set(expected)
    for figure_id, kind in expected.items():
        figure = page.figures[figure_id]
        assert figure.svgs == 1, figure_id
        assert any(d.strip() for d in figure.paths), figure_id  # (a space glyph is a path with no d)
        assert figure.caption.strip(), figure_id
        if kind == "line":  # a data line through the samples, not only the axes' frame
            assert max(vertices(d) for d in figure.paths) >= 100, figure_id
        elif kind == "heatmap":
            assert any(href.startswith("data:image/png;base64,") for href in figure.images), figure_id
        elif kind.startswith("bars"):  # "bars:N": N bars in matplotlib's C3 red
            bars = [style for style in figure.styles if "fill: #d62728" in style]
            assert len(bars) == int(kind.split(":")[1]), figure_id


def assert_self_contained(page: Page) -> None:
    assert not page.tags & {"script", "link", "iframe", "object", "embed", "base"}
    outside = [r for r in page.references if not (r.startswith("#") or r.startswith("data:image/png;base64,"))]
    assert outside == []


def render(chromium: str, page: Path, tmp: Path) -> tuple[Page, list[str], list[str]]:
    """(the DOM Chromium built, the page's own requests, every request that reached the proxy)."""
    with browser.recording_proxy() as proxy:
        dom = browser.dump_dom(chromium, page, proxy, tmp / f"profile-{page.stem}", tmp / f"{page.stem}.netlog.json")
        return Page(dom), browser.page_requests(tmp / f"{page.stem}.netlog.json"), list(proxy.requests)
