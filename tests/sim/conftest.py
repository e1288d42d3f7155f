"""The simulator tests' shared fixtures: a Cluster port on the local kube-apiserver (``topolvm-sim snapshot``), and
headless Chromium for the HTML reports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import browser, prerequisites
from tests.support.controlplane import ControlPlane
from topolvm.kube import client

pytest.register_assert_rewrite("tests.sim.report_page")  # its asserts explain a failure as a test's do


@pytest.fixture(scope="module")
def kube(kube_api: ControlPlane) -> Iterator[client.KubeCluster]:
    kube_api.install_crds()
    api = client.api_client(kube_api.kubeconfig)
    yield client.KubeCluster(api)
    api.close()


@pytest.fixture(scope="session")
def chromium() -> str:
    binary = browser.executable()
    if binary is None:
        message = "chromium is not installed (scripts/install-system-deps.sh installs Debian's chromium)"
        prerequisites.missing(message)
    return binary
