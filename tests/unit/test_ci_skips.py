"""The CI rule of tests/conftest.py: with CI set, a skip whose reason is not in the allow-list is reported as a
failure; allowed skips, xfails, and every skip outside CI are left alone; README names every allowed skip."""

from __future__ import annotations

import pathlib
import re

import pytest

from tests import conftest


def skipped(reason: str) -> pytest.TestReport:
    return pytest.TestReport(
        nodeid="tests/x.py::test_x",
        location=("tests/x.py", 1, "test_x"),
        keywords={},
        outcome="skipped",
        longrepr=("tests/x.py", 1, f"Skipped: {reason}"),
        when="setup",
    )


@pytest.mark.parametrize("ci", ["true", "1", "yes"])
def test_in_ci_an_unlisted_skip_fails_with_its_reason(monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    monkeypatch.setenv("CI", ci)
    report = skipped("no kube-apiserver binary; build it with: ci/peers/build.sh kube-apiserver")
    conftest.pytest_runtest_logreport(report)
    assert report.outcome == "failed"
    assert "ci/peers/build.sh kube-apiserver" in str(report.longrepr)


@pytest.mark.parametrize("reason", conftest.CI_ALLOWED_SKIPS)
def test_in_ci_the_allowed_skips_stay_skips(monkeypatch: pytest.MonkeyPatch, reason: str) -> None:
    monkeypatch.setenv("CI", "true")
    report = skipped(reason)
    conftest.pytest_runtest_logreport(report)
    assert report.outcome == "skipped"


def test_outside_ci_every_skip_stays_a_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    report = skipped("needs root to create loop devices and volume groups")
    conftest.pytest_runtest_logreport(report)
    assert report.outcome == "skipped"


def test_an_xfail_is_not_a_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    report = skipped("known bug")
    report.wasxfail = "known bug"  # type: ignore[attr-defined]
    conftest.pytest_runtest_logreport(report)
    assert report.outcome == "skipped"


@pytest.mark.parametrize("reason", conftest.CI_ALLOWED_SKIPS)
def test_the_readme_names_every_allowed_skip(reason: str) -> None:
    """README says which skips CI accepts; each reason's cause (before "; runs in"/": runs in") is quoted there."""
    cause = re.split(r"[:;] runs in", reason)[0]
    readme = " ".join((pathlib.Path(__file__).resolve().parents[2] / "README.md").read_text().split())
    assert f'"{cause}"' in readme
