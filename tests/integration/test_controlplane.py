"""Smoke tests of the local control plane (tests/support/controlplane.py) through the kubernetes client:
core objects, the LogicalVolume CRD from deploy/crds (validation, status subresource), auth, and clean shutdown.

Needs etcd and kube-apiserver (ci/peers/build.sh etcd kube-apiserver); skips without them, fails in CI.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.support import peers
from tests.support.controlplane import ControlPlane

GROUP, VERSION, PLURAL = "topolvm.io", "v1", "logicalvolumes"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def api(kube_api: ControlPlane) -> Iterator[client.ApiClient]:
    api_client = config.new_client_from_config(config_file=kube_api.kubeconfig)
    try:
        yield api_client
    finally:
        api_client.close()


@pytest.fixture(scope="module")
def crds(kube_api: ControlPlane) -> list[str]:
    return kube_api.install_crds()


def logical_volume(name: str, size: object = "1Gi", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LogicalVolume",
        "metadata": {"name": name},
        "spec": {"name": name, "nodeName": "node-a", "size": size, "deviceClass": "ssd", **spec},
    }


def test_fixture_interface(kube_api: ControlPlane) -> None:
    assert Path(kube_api.kubeconfig).is_file()
    assert kube_api.url.startswith("https://127.0.0.1:")
    assert kube_api.token


def test_version_is_stamped(api: client.ApiClient) -> None:
    info = client.VersionApi(api).get_code()
    assert info.git_version.startswith("v1."), info.git_version  # not v0.0.0: the build's ldflags took
    assert info.major == "1"


def test_namespace_and_configmap(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    ns = unique("smoke")
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    assert ns in [n.metadata.name for n in core.list_namespace().items]

    cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="settings"), data={"k": "v"})
    core.create_namespaced_config_map(ns, cm)
    listed = core.list_namespaced_config_map(ns).items
    assert [(c.metadata.name, c.data) for c in listed if c.metadata.name == "settings"] == [("settings", {"k": "v"})]

    core.patch_namespaced_config_map("settings", ns, {"data": {"k": "w"}})
    assert core.read_namespaced_config_map("settings", ns).data == {"k": "w"}
    core.delete_namespaced_config_map("settings", ns)
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("settings", ns)
    assert e.value.status == 404


def test_crd_is_established_and_cluster_scoped(api: client.ApiClient, crds: list[str]) -> None:
    assert "logicalvolumes.topolvm.io" in crds
    crd = client.ApiextensionsV1Api(api).read_custom_resource_definition("logicalvolumes.topolvm.io")
    assert crd.spec.scope == "Cluster"
    assert crd.spec.names.kind == "LogicalVolume"
    [version] = crd.spec.versions
    assert (version.name, version.served, version.storage) == ("v1", True, True)
    assert version.subresources.status == {}


def test_logical_volume_create_and_status_subresource(api: client.ApiClient, crds: list[str]) -> None:
    custom = client.CustomObjectsApi(api)
    name = unique("lv")
    body = logical_volume(name)
    body["status"] = {"volumeID": "ignored"}  # the main resource drops status when a status subresource exists
    created = custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
    assert created["spec"]["size"] == "1Gi"
    assert "status" not in created or not created["status"]
    assert created["metadata"]["uid"]

    listed = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]
    assert name in [item["metadata"]["name"] for item in listed]

    # Status goes through /status; spec changes sent there are ignored.
    created["status"] = {"volumeID": created["metadata"]["uid"], "code": 0, "currentSize": "1Gi"}
    created["spec"]["nodeName"] = "node-b"
    updated = custom.replace_cluster_custom_object_status(GROUP, VERSION, PLURAL, name, created)
    assert updated["status"] == {"volumeID": created["metadata"]["uid"], "code": 0, "currentSize": "1Gi"}
    assert updated["spec"]["nodeName"] == "node-a"

    # And the other way round: a spec update through the main resource keeps status.
    updated["spec"]["size"] = 2 << 30  # an integer Quantity is accepted too (x-kubernetes-int-or-string)
    updated["status"]["message"] = "ignored"
    resized = custom.replace_cluster_custom_object(GROUP, VERSION, PLURAL, name, updated)
    assert resized["spec"]["size"] == 2 << 30
    assert "message" not in resized["status"]

    patched = custom.patch_cluster_custom_object_status(
        GROUP, VERSION, PLURAL, name, {"status": {"code": 8, "message": "no space left"}}
    )
    assert (patched["status"]["code"], patched["status"]["message"]) == (8, "no space left")
    assert patched["status"]["currentSize"] == "1Gi"

    custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (logical_volume("bad-size", size="lots"), "spec.size"),
        ({**logical_volume("no-node"), "spec": {"name": "no-node", "size": "1Gi"}}, "spec.nodeName"),
    ],
    ids=["bad-size", "missing-nodeName"],
)
def test_logical_volume_schema_rejects(
    api: client.ApiClient, crds: list[str], body: dict[str, Any], field: str
) -> None:
    with pytest.raises(ApiException) as e:
        client.CustomObjectsApi(api).create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
    assert e.value.status == 422
    assert field in e.value.body


def test_wrong_token_is_unauthorized(kube_api: ControlPlane) -> None:
    assert kube_api.request("GET", "/api/v1/namespaces")[0] == 200
    assert kube_api.request("GET", "/api/v1/namespaces", token="not-a-token")[0] == 401


@pytest.mark.slow
def test_context_manager_stops_everything_on_error(kube_api: ControlPlane) -> None:
    """A second, short-lived control plane: an exception inside the block still stops both servers and cleans up.
    (Depends on kube_api only so that it skips or fails the same way when the binaries are missing.)"""
    cp = ControlPlane()
    with pytest.raises(RuntimeError, match="boom"), cp:
        etcd, apiserver = cp._etcd, cp._apiserver
        assert etcd is not None and apiserver is not None
        workdir = cp.workdir
        assert cp.request("GET", "/readyz")[0] == 200
        raise RuntimeError("boom")
    assert etcd.poll() is not None
    assert apiserver.poll() is not None
    assert not workdir.exists()


def test_binary_lookup_prefers_test_asset_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "etcd"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("TEST_ASSET_ETCD", str(fake))
    assert peers.find_binary("etcd") == fake
    monkeypatch.setenv("TEST_ASSET_ETCD", str(tmp_path / "missing"))
    reason = peers.find_binary("etcd")
    assert isinstance(reason, str) and "TEST_ASSET_ETCD" in reason

    monkeypatch.delenv("TEST_ASSET_ETCD")
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(tmp_path))
    assert peers.find_binary("etcd") == fake
    monkeypatch.setenv("TOPOLVM_CACHE", str(tmp_path / "nocache"))
    reason = peers.find_binary("kube-apiserver")
    assert isinstance(reason, str) and "ci/peers/build.sh" in reason
    assert os.fspath(tmp_path) in reason
