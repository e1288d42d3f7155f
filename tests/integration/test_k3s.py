"""ci/kind's scenario on a k3s cluster that testcontainers starts in Docker: the image built by
harness/container_image.py imported into k3s's containerd, the volume group of ci/kind/loop-vg.sh on a loop
device of this host (the k3s container sees the host's /dev), the prerequisites and the chart installed by
ci/kind/install.sh, then ci/kind/scenario.py (a thin claim written by a pod, its snapshot restored into a claim
read by another pod, cleanup).

This project's CI has no Docker engine: there the test skips with ``NO_DOCKER_REASON``, the one skip of it CI
accepts (tests/conftest.py), and tests/e2e/test_snapshots.py runs the scenario on the control-plane harness.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import cache, container_image
from tests.conftest import NO_DOCKER_REASON
from tests.support import prerequisites

pytestmark = [pytest.mark.root, pytest.mark.slow]

KIND = cache.REPO_ROOT / "ci" / "kind"
K3S_IMAGE = os.environ.get("TOPOLVM_K3S_IMAGE", "rancher/k3s:v1.33.1-k3s1")


def docker_engine() -> bool:
    host = os.environ.get("DOCKER_HOST")
    socket = Path("/var/run/docker.sock")
    return bool(host) or (socket.exists() and stat.S_ISSOCK(socket.stat().st_mode))


def require(condition: bool, reason: str) -> None:
    """A prerequisite besides Docker: skip without it, or fail in CI."""
    if condition:
        return
    prerequisites.missing(reason)


@pytest.fixture
def k3s(tmp_path: Path) -> Iterator[Path]:
    """A k3s cluster holding the image and seeing this host's /dev; yields its kubeconfig."""
    if not docker_engine():
        pytest.skip(NO_DOCKER_REASON)
    require(importlib.util.find_spec("testcontainers") is not None, "testcontainers not installed (make install)")
    require(shutil.which("kubectl") is not None, "kubectl not found (ci/kind/install.sh needs it)")
    require(not container_image.prerequisites(), "; ".join(container_image.prerequisites()))
    from testcontainers.community.k3s import K3SContainer

    container_image.ensure()
    container_image.save(tmp_path / "topolvm-py.tar")
    cluster = K3SContainer(image=K3S_IMAGE)
    cluster.with_volume_mapping("/dev", "/dev", "rw").with_volume_mapping(str(tmp_path), "/images", "ro")
    try:
        subprocess.run([KIND / "loop-vg.sh", "create", tmp_path], check=True)
        with cluster:
            loaded = cluster.exec(["ctr", "-n", "k8s.io", "images", "import", "/images/topolvm-py.tar"])
            assert loaded.exit_code == 0, loaded.output
            kubeconfig = tmp_path / "kubeconfig"
            kubeconfig.write_text(cluster.config_yaml())
            yield kubeconfig
    finally:
        subprocess.run([KIND / "loop-vg.sh", "delete", tmp_path], check=False)


def test_thin_claim_snapshot_and_restore_on_k3s(k3s: Path, helm: Path) -> None:
    env = {**os.environ, "KUBECONFIG": str(k3s), "HELM": str(helm)}
    subprocess.run([KIND / "install.sh"], check=True, env=env)
    done = subprocess.run(
        [sys.executable, KIND / "scenario.py", "--kubeconfig", k3s], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "scenario passed" in done.stdout
