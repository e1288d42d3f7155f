"""``KubeCluster``: the ``Cluster`` port on a real Kubernetes API server (the official kubernetes client).

LogicalVolumes go through the custom-objects API (the status subresource for status), Nodes through JSON merge
patches that carry ``metadata.resourceVersion`` (so a stale write is a 409 Conflict, never a lost update, and
nothing but metadata is ever written to a Node). Watches list, then watch from the list's resourceVersion on a
thread, re-listing after a 410 Gone. Bodies are handled as JSON dicts (``_preload_content=False``): one
conversion to ``topolvm.core.resources`` and back, here, for every object.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from topolvm import constants, errors, ports
from topolvm.core import quantity, resources

log = logging.getLogger(__name__)

_CR = (constants.LOGICAL_VOLUME_GROUP, constants.LOGICAL_VOLUME_VERSION, constants.LOGICAL_VOLUME_PLURAL)
JsonDict = dict[str, Any]


def _error(exc: ApiException, what: str) -> errors.TopoLVMError:
    reason = exc.reason or ""
    with contextlib.suppress(TypeError, ValueError, AttributeError):
        reason = json.loads(exc.body or "{}").get("message", reason)
    status = exc.status or 0
    if status == 404:
        return errors.NotFound(f"{what} not found")
    if status == 409:
        return (
            errors.AlreadyExists(f"{what}: {reason}")
            if "already exists" in reason
            else errors.Conflict(f"{what}: {reason}")
        )
    if status in (400, 422):
        return errors.InvalidArgument(f"{what}: {reason}")
    if status in (401, 403):
        return errors.FailedPrecondition(f"{what}: access denied: {reason}")
    return errors.Unavailable(f"{what}: API server answered {status}: {reason}")


def _json(response: Any) -> JsonDict:
    data: JsonDict = json.loads(response.data)
    return data


def _meta_from(raw: Mapping[str, Any]) -> resources.Meta:
    md = raw.get("metadata", {})
    return resources.Meta(
        name=md.get("name", ""),
        uid=md.get("uid", ""),
        resource_version=md.get("resourceVersion", ""),
        labels=dict(md.get("labels") or {}),
        annotations=dict(md.get("annotations") or {}),
        finalizers=tuple(md.get("finalizers") or ()),
        deletion_timestamp=md.get("deletionTimestamp"),
        creation_timestamp=md.get("creationTimestamp"),
    )


def _size(value: Any) -> int:
    return value if isinstance(value, int) else quantity.to_bytes(str(value))


def lv_from_json(raw: Mapping[str, Any]) -> resources.LogicalVolume:
    spec = raw.get("spec", {})
    status = raw.get("status") or {}
    current = status.get("currentSize")
    return resources.LogicalVolume(
        meta=_meta_from(raw),
        spec=resources.LogicalVolumeSpec(
            name=spec.get("name", ""),
            node_name=spec.get("nodeName", ""),
            size=_size(spec.get("size", 0)),
            device_class=spec.get("deviceClass", ""),
            lvcreate_option_class=spec.get("lvcreateOptionClass", ""),
            source=spec.get("source", ""),
            access_type=spec.get("accessType", ""),
        ),
        status=resources.LogicalVolumeStatus(
            volume_id=status.get("volumeID", ""),
            code=int(status.get("code", 0)),
            message=status.get("message", ""),
            current_size=_size(current) if current is not None else None,
        ),
    )


def lv_to_json(lv: resources.LogicalVolume) -> JsonDict:
    meta: JsonDict = {
        "name": lv.meta.name,
        "labels": dict(lv.meta.labels),
        "annotations": dict(lv.meta.annotations),
        "finalizers": list(lv.meta.finalizers),
    }
    if lv.meta.resource_version:
        meta["resourceVersion"] = lv.meta.resource_version
    spec: JsonDict = {"name": lv.spec.name, "nodeName": lv.spec.node_name, "size": str(lv.spec.size)}
    for key, value in (
        ("deviceClass", lv.spec.device_class),
        ("lvcreateOptionClass", lv.spec.lvcreate_option_class),
        ("source", lv.spec.source),
        ("accessType", lv.spec.access_type),
    ):
        if value:
            spec[key] = value
    status: JsonDict = {"code": lv.status.code}
    if lv.status.volume_id:
        status["volumeID"] = lv.status.volume_id
    if lv.status.message:
        status["message"] = lv.status.message
    if lv.status.current_size is not None:
        status["currentSize"] = str(lv.status.current_size)
    return {
        "apiVersion": f"{_CR[0]}/{_CR[1]}",
        "kind": constants.LOGICAL_VOLUME_KIND,
        "metadata": meta,
        "spec": spec,
        "status": status,
    }


def node_from_json(raw: Mapping[str, Any]) -> resources.Node:
    return resources.Node(_meta_from(raw))


class _Watch:
    """List, then watch from the list's resourceVersion, on a daemon thread, until closed."""

    def __init__(
        self,
        list_fn: Callable[..., Any],
        list_kwargs: Mapping[str, Any],
        convert: Callable[[Mapping[str, Any]], resources.LogicalVolume | resources.Node],
        listener: ports.EventListener,
    ) -> None:
        self._list_fn, self._kwargs, self._convert, self._listener = list_fn, dict(list_kwargs), convert, listener
        self._stop = threading.Event()
        self._watch: watch.Watch | None = None
        self._thread = threading.Thread(target=self._run, name="kube-watch", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()

    def _emit(self, kind: str, raw: Mapping[str, Any]) -> None:
        try:
            self._listener(resources.Event(resources.EventType(kind), self._convert(raw)))
        except Exception:
            log.exception("watch listener failed")

    def _run(self) -> None:
        delay = 0.2
        version: str | None = None
        while not self._stop.is_set():
            try:
                if version is None:
                    listed = _json(self._list_fn(**self._kwargs, _preload_content=False))
                    for item in listed.get("items", []):
                        self._emit("ADDED", item)
                    version = listed["metadata"]["resourceVersion"]
                self._watch = watch.Watch()
                for event in self._watch.stream(
                    self._list_fn, **self._kwargs, resource_version=version, timeout_seconds=60,
                    allow_watch_bookmarks=True,
                ):  # fmt: skip
                    if self._stop.is_set():
                        return
                    raw = event["raw_object"]
                    if event["type"] == "ERROR":
                        if raw.get("code") == 410:
                            version = None  # too old: list again
                        break
                    version = raw.get("metadata", {}).get("resourceVersion", version)
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        self._emit(event["type"], raw)
                delay = 0.2
            except ApiException as exc:
                if exc.status == 410:
                    version = None
                    continue
                log.warning("watch failed (%s); retrying in %.1fs", _error(exc, "watch"), delay)
            except Exception as exc:
                log.warning("watch failed (%s); retrying in %.1fs", exc, delay)
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, 10.0)


class KubeCluster:
    def __init__(self, api: client.ApiClient) -> None:
        self._custom = client.CustomObjectsApi(api)
        self._core = client.CoreV1Api(api)

    # --- LogicalVolumes ---
    def get_logical_volume(self, *, name: str) -> resources.LogicalVolume | None:
        try:
            return lv_from_json(_json(self._custom.get_cluster_custom_object(*_CR, name, _preload_content=False)))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise _error(exc, f"LogicalVolume {name!r}") from None

    def list_logical_volumes(self) -> list[resources.LogicalVolume]:
        try:
            listed = _json(self._custom.list_cluster_custom_object(*_CR, _preload_content=False))
        except ApiException as exc:
            raise _error(exc, "LogicalVolumes") from None
        return [lv_from_json(item) for item in listed.get("items", [])]

    def create_logical_volume(self, *, lv: resources.LogicalVolume) -> resources.LogicalVolume:
        body = lv_to_json(lv)
        body["metadata"].pop("resourceVersion", None)
        body.pop("status")  # status is written through its subresource only
        try:
            return lv_from_json(_json(self._custom.create_cluster_custom_object(*_CR, body, _preload_content=False)))
        except ApiException as exc:
            raise _error(exc, f"LogicalVolume {lv.name!r}") from None

    def update_logical_volume(self, *, lv: resources.LogicalVolume) -> resources.LogicalVolume:
        try:
            raw = self._custom.replace_cluster_custom_object(*_CR, lv.name, lv_to_json(lv), _preload_content=False)
        except ApiException as exc:
            raise _error(exc, f"LogicalVolume {lv.name!r}") from None
        return lv_from_json(_json(raw))

    def update_logical_volume_status(self, *, lv: resources.LogicalVolume) -> resources.LogicalVolume:
        try:
            raw = self._custom.replace_cluster_custom_object_status(
                *_CR, lv.name, lv_to_json(lv), _preload_content=False
            )
        except ApiException as exc:
            raise _error(exc, f"LogicalVolume {lv.name!r} status") from None
        return lv_from_json(_json(raw))

    def delete_logical_volume(self, *, name: str) -> None:
        try:
            self._custom.delete_cluster_custom_object(*_CR, name, _preload_content=False)
        except ApiException as exc:
            raise _error(exc, f"LogicalVolume {name!r}") from None

    def watch_logical_volumes(self, listener: ports.EventListener) -> ports.Subscription:
        kwargs = dict(zip(("group", "version", "plural"), _CR, strict=True))
        return _Watch(self._custom.list_cluster_custom_object, kwargs, lv_from_json, listener)

    # --- Nodes ---
    def get_node(self, *, name: str) -> resources.Node | None:
        try:
            return node_from_json(_json(self._core.read_node(name, _preload_content=False)))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise _error(exc, f"Node {name!r}") from None

    def list_nodes(self) -> list[resources.Node]:
        try:
            listed = _json(self._core.list_node(_preload_content=False))
        except ApiException as exc:
            raise _error(exc, "Nodes") from None
        return [node_from_json(item) for item in listed.get("items", [])]

    def update_node(self, *, node: resources.Node) -> resources.Node:
        current = self.get_node(name=node.name)
        if current is None:
            raise errors.NotFound(f"Node {node.name!r} not found")

        def merged(old: Mapping[str, str], new: Mapping[str, str]) -> dict[str, str | None]:
            return {**dict.fromkeys(old), **new}  # null removes a key in a merge patch

        patch = {
            "metadata": {
                "resourceVersion": node.meta.resource_version,
                "labels": merged(current.meta.labels, node.meta.labels),
                "annotations": merged(current.meta.annotations, node.meta.annotations),
                "finalizers": list(node.meta.finalizers),
            }
        }
        try:
            raw = self._core.patch_node(
                node.name, patch, _content_type="application/merge-patch+json", _preload_content=False
            )
        except ApiException as exc:
            raise _error(exc, f"Node {node.name!r}") from None
        return node_from_json(_json(raw))

    def watch_nodes(self, listener: ports.EventListener) -> ports.Subscription:
        return _Watch(self._core.list_node, {}, node_from_json, listener)
