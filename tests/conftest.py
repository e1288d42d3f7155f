"""Shared fixtures, the skip rules for tests that need root, lvm2 or device-mapper, and the CI rule that turns
every other skip into a failure."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness import availability
from tests.support import cgroups, loopvg

# The session-scoped ``kube_api`` fixture: a real etcd + kube-apiserver on loopback (built by ci/peers/build.sh);
# ``kube_cluster``: that plus kube-controller-manager, kube-scheduler and kwok (tests/support/cluster.py).
pytest_plugins = ["tests.support.controlplane", "tests.support.cluster"]

DM_REASON = "needs device-mapper (thin pools, snapshots, RAID): runs in the HIL VM"
EXT4_ONLINE_RESIZE_REASON = "the host kernel refuses online ext4 resize; runs in the HIL VM"
NO_DOCKER_REASON = (
    "no Docker engine for the k3s scenario (no DOCKER_HOST, no /var/run/docker.sock): runs in the control-plane "
    "harness (tests/e2e/test_snapshots.py)"
)

# The only skips CI accepts (CI=true/1/yes): each names a case this host cannot run and the HIL VM suites run
# (make test runs them right after, on a real kernel). Any other skip in CI is reported as a failure with its
# reason, so a missing peer binary, a missing package or a lost root privilege breaks CI instead of shrinking
# the suite. Add to this list only what another part of `make test` runs instead. The CI machine has no Docker
# engine: issue 10 allows the testcontainers (k3s) test to skip there, the control-plane harness running the
# same claim, pod and thin snapshot instead.
CI_ALLOWED_SKIPS = (DM_REASON, EXT4_ONLINE_RESIZE_REASON, cgroups.IO_REASON, NO_DOCKER_REASON)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root_reason = loopvg.can_run()
    for item in items:
        if "root" in item.keywords and root_reason:
            item.add_marker(pytest.mark.skip(reason=root_reason))
        # dm-marked cases of real-LVM worlds are skipped by the world fixtures (skip_without_dm), so their
        # in-memory twins still run here.
    if os.environ.get("PYTEST_XDIST_WORKER") and getattr(config.option, "loadgroup", False):  # xdist's worker flag
        items[:] = longest_first(items, json.loads(DURATIONS.read_text()) if DURATIONS.is_file() else {})


# Seconds per test of a recent run (scripts/record_durations.py writes it). Under ``--dist loadgroup`` (make test)
# xdist hands each test (a group of its own) to the first free worker, in collection order: with the slowest
# first, the two 11-minute scale replays start at once on the two workers and the short tests fill in around them.
# (Under the default ``--dist load`` each worker gets a block of consecutive tests up front, so this order would
# put the slow ones all on one worker: it is applied only with loadgroup.) In collection order the non-VM phase
# took 42.7 minutes on 2026-12-07, the scale replays last.
DURATIONS = Path(__file__).with_name("durations.json")


def longest_first(items: list[pytest.Item], seconds: dict[str, float]) -> list[pytest.Item]:
    """``items`` with the modules of most known seconds first, each module's tests together (its module-scoped
    fixtures stay set up) and longest first; tests and modules not in ``seconds`` keep their order, after. Every
    worker sorts the same collection alike, as xdist requires."""
    modules = [item.nodeid.split("::")[0] for item in items]
    module_seconds: dict[str, float] = {}
    for module, item in zip(modules, items, strict=True):
        module_seconds[module] = module_seconds.get(module, 0.0) + seconds.get(item.nodeid, 0.0)
    first_seen = {module: index for index, module in enumerate(dict.fromkeys(modules))}

    def key(index: int) -> tuple[float, int, float, int]:
        module = modules[index]
        return (-module_seconds[module], first_seen[module], -seconds.get(items[index].nodeid, 0.0), index)

    return [items[index] for index in sorted(range(len(items)), key=key)]


def skip_without_dm(request: pytest.FixtureRequest) -> None:
    """Call from a real-LVM world fixture: skip a dm-marked test when device-mapper is not available."""
    if request.node.get_closest_marker("dm") and not loopvg.dm_available():
        pytest.skip(DM_REASON)


def skip_reason(report: pytest.TestReport) -> str:
    """The reason of a skipped report: pytest's ``(path, line, "Skipped: reason")`` longrepr, or its text."""
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return text.removeprefix("Skipped: ")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """In CI, a skip outside ``CI_ALLOWED_SKIPS`` becomes a failure. Done on the report (not in makereport) so it
    also covers the per-case reports the HIL suites relay from inside the VM, and before xdist or the terminal
    see the report."""
    if not (report.skipped and availability.in_ci()) or hasattr(report, "wasxfail"):
        return
    reason = skip_reason(report)
    if reason in CI_ALLOWED_SKIPS:
        return
    report.outcome = "failed"
    report.longrepr = f"skipped in CI, which allows only the skips listed in tests/conftest.py: {reason}"
