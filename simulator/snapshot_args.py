"""The command-line inputs of ``topolvm-sim snapshot``: the kubeconfig (and the connection it makes), the
nodes' lvmd.yaml files (``--lvmd-config``) and the node selector (``--selector``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

from simulator import node_shapes
from topolvm import errors
from topolvm.kube import client
from topolvm.lvmd import config as lvmd_config


def default_kubeconfig() -> str | None:
    """kubectl's choice, for one file: the first existing file of ``$KUBECONFIG`` (a list of paths: they are not
    merged), else ``~/.kube/config`` when it exists."""
    listed = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    for path in listed:
        if Path(path).expanduser().is_file():
            return str(Path(path).expanduser())
    if listed:
        return listed[0]  # none exists: reading it says so
    home = Path.home() / ".kube" / "config"
    return str(home) if home.is_file() else None


def connect(kubeconfig: str, timeout: float = 15.0) -> tuple[client.KubeCluster, Callable[[], None], str]:
    """(cluster, close, API server URL) for a kubeconfig; ConfigError when it cannot be read or used."""
    try:
        Path(kubeconfig).read_bytes()
    except OSError as exc:
        raise errors.ConfigError(f"{kubeconfig}: cannot read the kubeconfig: {exc.strerror}") from None
    try:
        api = client.api_client(kubeconfig)
    except Exception as exc:  # the kubernetes client raises assorted types for malformed files
        raise errors.ConfigError(f"{kubeconfig}: not a usable kubeconfig: {exc}") from None
    return client.KubeCluster(api, timeout=timeout), api.close, str(api.configuration.host)


def lvmd_configs(values: Sequence[str], pool_label: str | None) -> dict[str | None, node_shapes.Lvmd]:
    """``--lvmd-config`` values: ``PATH`` (every node) or ``POOL=PATH`` (nodes whose pool label is POOL)."""
    configs: dict[str | None, node_shapes.Lvmd] = {}
    for value in values:
        pool, sep, path = value.partition("=")
        key: str | None = pool if sep else None
        path = path if sep else value
        if key is not None and pool_label is None:
            raise errors.ConfigError(f"--lvmd-config {value}: POOL=PATH needs --pool-label (the label naming pools)")
        if key in configs:
            raise errors.ConfigError(f"--lvmd-config {value}: {'pool ' + key if key else 'every node'} has one already")
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise errors.ConfigError(f"{path}: cannot read: {exc.strerror}") from None
        lvmd_config.parse(text, path)  # lvmd's own checks (duplicate keys, YAML errors), with its messages
        configs[key] = node_shapes.Lvmd.of(yaml.safe_load(text), path)
    return configs


def selector(text: str) -> dict[str, str]:
    """``--selector key=value[,key=value]``: node labels, all of which must match."""
    found: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise errors.ConfigError(f"--selector {text}: {part!r} is not key=value")
        found[key] = value
    return found
