"""The simulator tests' shared fixture: a Cluster port on the local kube-apiserver (``topolvm-sim snapshot``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.controlplane import ControlPlane
from topolvm.kube import client


@pytest.fixture(scope="module")
def kube(kube_api: ControlPlane) -> Iterator[client.KubeCluster]:
    kube_api.install_crds()
    api = client.api_client(kube_api.kubeconfig)
    yield client.KubeCluster(api)
    api.close()
