"""``deployed``: a control plane of its own with everything in deploy/ applied for real, and each
ServiceAccount's identity (token, kubeconfig). Its own, not the shared ``kube_api``: deploy/ installs a
cluster-wide pod webhook with failurePolicy: Fail, which must not reach other tests' pods."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import deployment, driver, loopvg, peers, prerequisites
from tests.support.controlplane import ControlPlane


@dataclass(frozen=True)
class Deployed:
    plane: ControlPlane
    applied: list[dict[str, Any]]  # the objects as stored
    tokens: dict[str, str]  # ServiceAccount name -> bound token
    kubeconfigs: dict[str, str]  # ServiceAccount name -> kubeconfig path


@pytest.fixture(scope="session")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    binaries = peers.binaries_or_skip()
    crd_dirs = deployment.third_party_crd_dirs()
    if isinstance(crd_dirs, str):
        prerequisites.missing(f"cannot apply deploy/: {crd_dirs}", ci=f"cannot apply deploy/ in CI: {crd_dirs}")
    home = tmp_path_factory.mktemp("deployed")
    with ControlPlane(binaries) as plane:
        plane.install_crds()
        for directory in crd_dirs:
            plane.install_crds(directory)
        applied = deployment.Applier(plane).apply_files(deployment.manifest_files())
        tokens = {sa: deployment.service_account_token(plane, sa) for sa in deployment.SERVICE_ACCOUNTS}
        kubeconfigs = {
            sa: deployment.write_kubeconfig(plane, tok, home / f"{sa}.kubeconfig") for sa, tok in tokens.items()
        }
        yield Deployed(plane, applied, tokens, kubeconfigs)


@pytest.fixture
def work() -> Iterator[Path]:
    """A directory for a test's processes (sockets, logs), short because unix socket paths are; their logs'
    tails are printed when the test ends."""
    path = Path(tempfile.mkdtemp(prefix="tlvm-", dir="/tmp"))
    yield path
    for log in sorted(path.glob("*.log")):
        print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def helm() -> Path:
    """The helm peer (`ci/peers/build.sh helm`); skips without it, or fails in CI."""
    return peers.binary_or_skip("helm")


def deployed_env(deployed: Deployed, vg: loopvg.LoopVg, work: Path) -> driver.Env:
    """Our processes over ``vg``, topolvm-controller and topolvm-node each under its own ServiceAccount."""
    return driver.Env(
        deployed.plane,
        vg,
        work,
        controller_kubeconfig=deployed.kubeconfigs["topolvm-controller"],
        node_kubeconfig=deployed.kubeconfigs["topolvm-node"],
    )


def new_namespace(plane: ControlPlane, name: str, labels: dict[str, str] | None = None) -> str:
    code, reply = plane.request("POST", "/api/v1/namespaces", {"metadata": {"name": name, "labels": labels or {}}})
    assert code in (201, 409), reply
    return name


# A refusal as our client logs it ("access denied"), as the API server words it ("forbidden"), or a status 403 as
# the kubernetes client prints it ("(403)"); not the digits 403 in a random name (pod "p-ec403c" once failed CI),
# a uid, a size or a log timestamp's milliseconds (",403 INFO").
REFUSAL = re.compile(r"forbidden|access denied|\(403\)|answered 403", re.IGNORECASE)


def logs_without_403(paths: list[Path]) -> None:
    """No log says the API server refused a request: each component has all the access it uses."""
    for path in paths:
        text = path.read_text(errors="replace") if path.exists() else ""
        for line in text.splitlines():
            assert not REFUSAL.search(line), f"{path.name}: {line}"
