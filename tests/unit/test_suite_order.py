"""The suite's own order on xdist workers (tests/conftest.py) and the durations it is steered by
(scripts/record_durations.py)."""

from __future__ import annotations

import types
from typing import Any, cast

import pytest

from scripts import record_durations
from tests.conftest import longest_first


def _items(*nodeids: str) -> list[pytest.Item]:
    return [cast(pytest.Item, types.SimpleNamespace(nodeid=n)) for n in nodeids]


def test_slow_modules_go_first_whole_and_the_rest_keeps_its_order() -> None:
    items = _items("a.py::t1", "a.py::t2", "b.py::t1", "b.py::t2", "b.py::t3", "c.py::t1", "d.py::t1")
    seconds = {"b.py::t3": 50.0, "b.py::t1": 10.0, "c.py::t1": 100.0, "a.py::t2": 1.0}
    order = [i.nodeid for i in longest_first(items, seconds)]
    # c (100 s), then b (60 s) longest first with its unknown test last, then a (1 s), then d as collected
    assert order == ["c.py::t1", "b.py::t3", "b.py::t1", "b.py::t2", "a.py::t2", "a.py::t1", "d.py::t1"]


def test_no_durations_keep_the_collection_order() -> None:
    items = _items("b.py::t1", "b.py::t2", "a.py::t1", "c.py::t1")
    assert longest_first(items, {}) == items


def test_a_durations_report_adds_up_setup_call_and_teardown(tmp_path: Any) -> None:
    report = tmp_path / "run.log"
    report.write_text(
        "============================= slowest durations =============================\n"
        "12.50s call     tests/e2e/test_x.py::test_a[one two]\n"
        "1.00s setup    tests/e2e/test_x.py::test_a[one two]\n"
        "0.50s teardown tests/e2e/test_x.py::test_b\n"
        "3 passed in 20.00s\n"
    )
    assert record_durations.parse(report.read_text()) == {
        "tests/e2e/test_x.py::test_a[one two]": 13.5,
        "tests/e2e/test_x.py::test_b": 0.5,
    }
    out = tmp_path / "durations.json"
    assert record_durations.main([str(report), "--min", "1", "--output", str(out)]) == 0
    assert out.read_text() == '{\n "tests/e2e/test_x.py::test_a[one two]": 13.5\n}\n'
    empty = tmp_path / "empty.log"
    empty.write_text("3 passed\n")
    assert record_durations.main([str(empty), "--output", str(out)]) == 1
