"""Shared fixtures and the skip rules for tests that need root, lvm2 or device-mapper."""

from __future__ import annotations

import pytest

from tests.support import loopvg

# The session-scoped ``kube_api`` fixture: a real etcd + kube-apiserver on loopback (built by ci/peers/build.sh).
pytest_plugins = ["tests.support.controlplane"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root_reason = loopvg.can_run()
    for item in items:
        if "root" in item.keywords and root_reason:
            item.add_marker(pytest.mark.skip(reason=root_reason))
        # dm-marked cases of real-LVM worlds are skipped by the world fixtures (skip_without_dm), so their
        # in-memory twins still run here.


DM_REASON = "needs device-mapper (thin pools, snapshots, RAID): runs in the HIL VM"


def skip_without_dm(request: pytest.FixtureRequest) -> None:
    """Call from a real-LVM world fixture: skip a dm-marked test when device-mapper is not available."""
    if request.node.get_closest_marker("dm") and not loopvg.dm_available():
        pytest.skip(DM_REASON)
