"""Every manifest in deploy/ is accepted by a real kube-apiserver (server-side dry run: nothing is stored), and
the configuration files shipped beside them load with the project's own loaders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from kubernetes import utils

from topolvm.extender import config as extender_config
from topolvm.lvmd import config as lvmd_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
MANIFESTS = sorted((DEPLOY / "manifests").glob("*.yaml"))


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.mark.parametrize("path", MANIFESTS, ids=[p.name for p in MANIFESTS])
def test_manifest_passes_server_side_dry_run(kube_api: Any, path: Path) -> None:
    kube_api.install_crds()
    api = kubernetes.config.new_client_from_config(config_file=kube_api.kubeconfig)
    try:
        # Objects in topolvm-system need the namespace to exist for the dry run to be judged on its merits.
        if kube_api.request("GET", "/api/v1/namespaces/topolvm-system")[0] != 200:
            kube_api.request("POST", "/api/v1/namespaces", {"metadata": {"name": "topolvm-system"}})
        for doc in documents(path):
            if doc["kind"] == "Namespace":
                continue  # created for real above; a dry-run create of it would only say "already exists"
            utils.create_from_dict(api, doc, dry_run="All")
    finally:
        api.close()


def test_lvmd_example_loads() -> None:
    cfg = lvmd_config.load(DEPLOY / "lvmd" / "lvmd.yaml")
    assert [dc.name for dc in cfg.device_classes] == ["ssd", "ssd-thin"] and cfg.lvm_command_prefix == ()


def test_scheduler_options_in_the_configmap_load() -> None:
    (configmap,) = [d for d in documents(DEPLOY / "manifests" / "scheduler.yaml") if d["kind"] == "ConfigMap"]
    cfg = extender_config.from_mapping(yaml.safe_load(configmap["data"]["scheduler-options.yaml"]))
    assert "9251" in str(cfg.listen)


def test_scheduler_config_routes_topolvm_capacity_to_the_extender() -> None:
    (doc,) = documents(DEPLOY / "scheduler-config.yaml")
    (extender,) = doc["extenders"]
    assert extender["managedResources"] == [{"name": "topolvm.io/capacity", "ignoredByScheduler": True}]
    assert extender["filterVerb"] == "predicate" and extender["prioritizeVerb"] == "prioritize"
