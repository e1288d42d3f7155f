"""Turn an in-VM pytest run into ordinary host-side pytest results.

Called by tests/hil/test_vm_suites.py. Each in-VM test case becomes its own host report (setup/call/teardown,
like a collected test) with node id ``<host test id>::<in-VM node id>``, so the terminal summary, ``-rA``,
JUnit XML and the exit code all count in-VM tests one by one, also under pytest-xdist. The host test itself
stands for the VM run: it fails when the VM did not produce results, with the serial console's tail.
"""

from __future__ import annotations

import contextlib
from typing import Literal

import pytest

from harness import junit, runner

_MAX_DETAILS = 20_000


def _reports(item: pytest.Item, case: junit.Case, console: str) -> list[pytest.TestReport]:
    nodeid = f"{item.nodeid}::{case.nodeid}"
    location = (case.file or item.location[0], case.line, case.nodeid.split("::", 1)[-1])
    keywords: dict[str, Literal[1]] = {"hil": 1, case.nodeid.rsplit("::", 1)[-1]: 1}

    def phase(
        when: Literal["setup", "call", "teardown"],
        outcome: Literal["passed", "failed", "skipped"],
        longrepr: str | tuple[str, int, str] | None = None,
        seconds: float = 0.0,
        sections: list[tuple[str, str]] | None = None,
    ) -> pytest.TestReport:
        return pytest.TestReport(
            nodeid=nodeid,
            location=location,
            keywords=keywords,
            outcome=outcome,
            longrepr=longrepr,
            when=when,
            sections=sections or [],
            duration=seconds,
        )

    if case.outcome == "skipped":
        # As pytest itself reports a skip: in setup, with (path, line, reason).
        reason = (case.file or item.location[0], case.line or 0, f"Skipped: {case.message}")
        return [phase("setup", "skipped", reason), phase("teardown", "passed")]
    if case.outcome == "failed":
        text = f"[in the HIL VM] {case.message}\n\n{case.details[-_MAX_DETAILS:]}"
        sections = [("HIL VM kernel messages (tail of the serial console)", console)]
        return [
            phase("setup", "passed"),
            phase("call", "failed", text, case.seconds, sections),
            phase("teardown", "passed"),
        ]
    return [phase("setup", "passed"), phase("call", "passed", seconds=case.seconds), phase("teardown", "passed")]


def under_xdist(item: pytest.Item) -> bool:
    """pytest-xdist workers accept only reports for the running item's own node id."""
    return hasattr(item.config, "workerinput")


def emit(item: pytest.Item, pytest_run: runner.PytestRun) -> None:
    """Send one host report per in-VM case through the normal reporting hooks.

    Under pytest-xdist this is not possible (a worker may only report its current item); there the in-VM
    failures fail the host test instead (see ``check``), and the full list is attached to its report.
    """
    if under_xdist(item):
        lines = [f"{c.outcome.upper():8} {c.nodeid}" for c in pytest_run.cases]
        item.add_report_section("call", "in-VM results", "\n".join(lines))
        return
    console = ""
    if pytest_run.failed:
        console = (
            pytest_run.run.console_tail(30, kernel_only=True) + f"\n(full console: {pytest_run.run.outcome.console})"
        )
    # The host test's output is being captured right now; reports written inside that capture would vanish
    # from the terminal, so suspend it as pytest does between tests.
    capture = item.config.pluginmanager.getplugin("capturemanager")
    suspended = capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext()
    with suspended:
        for case in pytest_run.cases:
            for report in _reports(item, case, console):
                item.ihook.pytest_runtest_logreport(report=report)


def check(pytest_run: runner.PytestRun, markexpr: str | None, item: pytest.Item | None = None) -> None:
    """Fail (or skip) the host test when the VM run itself went wrong.

    In-VM test failures were reported one by one by ``emit``; only under xdist do they fail this test.
    """
    result = pytest_run.run
    if result.problem is not None:
        pytest.fail(
            f"HIL VM run failed: {result.describe()}\n\n--- serial console (tail) ---\n{result.console_tail(60)}",
            pytrace=False,
        )
    if item is not None and under_xdist(item) and pytest_run.failed:
        details = "\n\n".join(f"{c.nodeid}: {c.message}\n{c.details[-3000:]}" for c in pytest_run.failed)
        pytest.fail(
            f"{len(pytest_run.failed)} of {len(pytest_run.cases)} in-VM tests failed "
            f"(logs in {result.run_dir}):\n\n{details}",
            pytrace=False,
        )
    code = result.exit_code
    if code == pytest.ExitCode.NO_TESTS_COLLECTED:
        pytest.skip(f"no in-VM tests selected (-m {markexpr!r}); logs in {result.run_dir}")
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        output = result.run_dir / "out" / "output.log"
        tail = output.read_text(errors="replace")[-6000:] if output.exists() else "(no output)"
        pytest.fail(f"in-VM pytest exited with {code}; logs in {result.run_dir}\n\n{tail}", pytrace=False)
