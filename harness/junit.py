"""Read the JUnit XML written by pytest inside the VM into plain test-case records.

Called by ``harness.runner`` (summaries) and ``harness.report`` (host-side pytest reports). Expects pytest's
``junit_family=xunit1`` output, which carries each test's file and line.
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET  # the XML comes from our own VM
from pathlib import Path
from typing import Literal

Outcome = Literal["passed", "failed", "skipped"]


@dataclasses.dataclass(frozen=True)
class Case:
    """One test case as pytest saw it inside the VM."""

    nodeid: str  # e.g. tests/contract/test_lvm.py::TestThin::test_snapshot[xfs]
    file: str
    line: int | None
    outcome: Outcome
    message: str  # failure/skip message, empty when passed
    details: str  # failure traceback or skip location, plus captured output
    seconds: float


def _nodeid(file: str, classname: str, name: str) -> str:
    module = file.removesuffix(".py").replace("/", ".")
    parts = [file]
    if classname.startswith(module + "."):
        parts += classname[len(module) + 1 :].split(".")
    elif classname and classname != module and not file:
        parts += classname.split(".")
    return "::".join([*parts, name])


def _case(element: ET.Element) -> Case:
    file = element.get("file", "")
    line_text = element.get("line")
    outcome: Outcome = "passed"
    message = ""
    details: list[str] = []
    for child in element:
        if child.tag in ("failure", "error"):
            outcome = "failed"
            prefix = "error in setup/teardown: " if child.tag == "error" else ""
            message = prefix + child.get("message", "")
            details.append(child.text or "")
        elif child.tag == "skipped":
            outcome = "skipped"
            message = child.get("message", "")
            details.append(child.text or "")
        elif child.tag in ("system-out", "system-err") and (child.text or "").strip():
            details.append(f"----- captured {child.tag} -----\n{child.text}")
    return Case(
        nodeid=_nodeid(file, element.get("classname", ""), element.get("name", "?")),
        file=file,
        line=int(line_text) if line_text and line_text.isdigit() else None,
        outcome=outcome,
        message=message,
        details="\n".join(details).strip(),
        seconds=float(element.get("time", "0") or 0),
    )


def parse(path: Path) -> list[Case]:
    """All test cases in a JUnit XML file, in file order; an error collecting a module is a failed case."""
    root = ET.parse(path).getroot()  # noqa: S314 - see the import
    return [_case(element) for element in root.iter("testcase")]
