"""End-to-end tests on ``kube_cluster`` (tests/support/cluster.py): the real kube-controller-manager and
kube-scheduler, kwok for the kubelets. A failing test prints the tails of every component's log."""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest

from tests.e2e.scene import Scene
from tests.support import prerequisites, stack
from tests.support.cluster import Cluster
from tests.support.stack import Stack


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, object, object]:
    report = yield
    if isinstance(report, pytest.TestReport) and report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture(autouse=True)
def _cluster_logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if request.node.stash.get(_FAILED, False) and "kube_cluster" in request.fixturenames:
        cluster: Cluster = request.getfixturevalue("kube_cluster")
        print(cluster.log_tails(4000))


@pytest.fixture(scope="session")
def topolvm(kube_cluster: Cluster) -> Iterator[Stack]:
    """TopoLVM deployed on the session's cluster (tests/support/stack.py); each test adds its own Nodes."""
    reason = stack.missing()
    if reason:
        prerequisites.missing(
            f"TopoLVM cannot be deployed on the end-to-end cluster: {reason}",
            ci=f"TopoLVM cannot be deployed on the end-to-end cluster in CI: {reason}",
        )
    deployed = Stack(kube_cluster, controller_args=stack.STRANDED_SWEEP)
    try:
        yield deployed.start()
        refusals = deployed.refusals()
        assert not refusals, "refused by RBAC:\n" + "\n".join(refusals[:20])
    finally:
        deployed.stop()


@pytest.fixture
def scene(topolvm: Stack) -> Scene:
    return Scene(topolvm)
