"""Where the tests find their peer binaries (etcd, kube-apiserver, kube-scheduler, helm…), or why they cannot.

Found like controller-runtime's envtest does: ``TEST_ASSET_<NAME>`` (``TEST_ASSET_ETCD``,
``TEST_ASSET_KUBE_APISERVER``: paths to the binaries), else ``$KUBEBUILDER_ASSETS/<name>``, else the peers cache
that ``ci/peers/build.sh NAME...`` fills (``${TOPOLVM_CACHE:-~/.cache/topolvm-py}/peers-v1/bin``).

``find_binary`` / ``find_binaries`` return the path(s) or the reason, with the command that builds what is missing.
Under pytest, ``binary_or_skip`` / ``binaries_or_skip`` skip with that reason, or fail with it when CI is
"true"/"1"/"yes" (``harness.availability.in_ci``).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

ETCD = "etcd"
KUBE_APISERVER = "kube-apiserver"
ENV_ASSETS = "KUBEBUILDER_ASSETS"
BUILD_HINT = "build them with: ci/peers/build.sh etcd kube-apiserver"


def peers_bin_dir() -> Path:
    cache = os.environ.get("TOPOLVM_CACHE") or str(Path.home() / ".cache" / "topolvm-py")
    return Path(cache) / "peers-v1" / "bin"


def _asset_env(name: str) -> str:
    return "TEST_ASSET_" + name.upper().replace("-", "_")


def _lookup(name: str) -> Path | str:
    explicit = os.environ.get(_asset_env(name))
    if explicit:
        path = Path(explicit)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        return f"{_asset_env(name)}={explicit} is not an executable file"
    assets = os.environ.get(ENV_ASSETS)
    candidates = [Path(assets) / name] if assets else []
    candidates.append(peers_bin_dir() / name)
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    return f"no {name} binary ({_asset_env(name)} unset; not at {' nor '.join(str(p) for p in candidates)})"


def find_binary(name: str) -> Path | str:
    """Path of ``name`` (etcd, kube-apiserver, kube-scheduler…), or the reason it cannot be found."""
    found = _lookup(name)
    return found if isinstance(found, Path) else f"{found}; build it with: ci/peers/build.sh {name}"


@dataclass(frozen=True)
class Binaries:
    """The control plane's (tests/support/controlplane.py)."""

    etcd: Path
    kube_apiserver: Path


def find_binaries() -> Binaries | str:
    """Both binaries, or the reasons the missing ones cannot be found."""
    etcd, apiserver = _lookup(ETCD), _lookup(KUBE_APISERVER)
    if isinstance(etcd, Path) and isinstance(apiserver, Path):
        return Binaries(etcd=etcd, kube_apiserver=apiserver)
    return "; ".join(r for r in (etcd, apiserver) if isinstance(r, str)) + f"; {BUILD_HINT}"


# --- under pytest


if importlib.util.find_spec("pytest") is not None:  # the lookup works without pytest; only skipping needs it
    from tests.support import prerequisites

    def binary_or_skip(name: str) -> Path:
        """Another peer binary (kube-scheduler…) by ``find_binary``; else skip with the reason, or fail with it in
        CI."""
        found = find_binary(name)
        if isinstance(found, str):
            prerequisites.missing(f"{name} unavailable: {found}", ci=f"{name} is needed in CI: {found}")
        return found

    def binaries_or_skip() -> Binaries:
        """The control plane's binaries; else skip with the reason, or fail with it in CI (CI=true/1/yes)."""
        found = find_binaries()
        if isinstance(found, str):
            prerequisites.missing(
                f"Kubernetes control plane unavailable: {found}",
                ci=f"Kubernetes control plane cannot start in CI: {found}",
            )
        return found
