"""``KubeCluster``: the ``Cluster`` port on a real Kubernetes API server, and the one kubeconfig loader.

One REST path for every kind (``topolvm.kube.codec`` knows where each lives and how to read and write it), over
the official client's configured connection pool (authentication, TLS, proxies). Writes are PUTs of the object as
last read with this project's fields overlaid, carrying ``metadata.resourceVersion``, so a stale write is a 409
Conflict, never a lost update, and fields the model does not know survive. Watches list first, in the caller's
thread (so ``watch`` returns with the current objects replayed, like the in-memory cluster), then follow from the
list's resourceVersion on a daemon thread; after a 410 Gone they list again and report objects that vanished
meanwhile as DELETED. Indexes the server knows are sent as field selectors; others are filtered here.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any

import kubernetes
import urllib3
from kubernetes import client

from topolvm import errors, ports
from topolvm.core import resources, workloads
from topolvm.kube import codec, store

log = logging.getLogger(__name__)

JsonDict = dict[str, Any]
WATCH_SECONDS = 60  # the server ends each watch after this; we resume from the last resourceVersion


def api_client(kubeconfig: str | None) -> client.ApiClient:
    """The one kubeconfig loader: the given file, else the in-cluster service account."""
    if kubeconfig:
        api: client.ApiClient = kubernetes.config.new_client_from_config(config_file=kubeconfig)
        return api
    kubernetes.config.load_incluster_config()
    return client.ApiClient()


def _error(status: int, body: bytes, what: str) -> errors.TopoLVMError:
    reason = ""
    with contextlib.suppress(ValueError, AttributeError):
        reason = json.loads(body or b"{}").get("message", "")
    reason = reason or body[:200].decode(errors="replace")
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


def _what(kind: resources.Kind[Any], name: str, namespace: str) -> str:
    return f"{kind.name} {namespace}/{name}" if namespace else f"{kind.name} {name!r}"


class KubeCluster:
    def __init__(self, api: client.ApiClient, *, timeout: float = 30.0) -> None:
        self._api = api
        self._timeout = timeout
        self.requests: collections.Counter[str] = collections.Counter()  # "VERB Kind" -> count, for benchmarks

    # --- plumbing ---
    def _call(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: JsonDict | None = None,
        timeout: float | tuple[float, float] | None = None,
        stream: bool = False,
    ) -> Any:
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        _method, url, headers, data, _post = self._api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = self._api.rest_client.request(
                method, url, headers=headers, body=data, _request_timeout=timeout or self._timeout
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise errors.Unavailable(f"API server unreachable: {exc}") from None
        return response.response if stream else response

    def _json(self, method: str, path: str, what: str, **kwargs: Any) -> JsonDict:
        response = self._call(method, path, **kwargs)
        data: bytes = response.read()
        if not 200 <= response.status <= 299:
            raise _error(response.status, data, what)
        result: JsonDict = json.loads(data)
        return result

    def _path(self, kind: resources.Kind[Any], name: str, namespace: str, sub: str = "") -> str:
        path = codec.codec(kind).route.collection(namespace) + "/" + urllib.parse.quote(name, safe="")
        return path + "/" + sub if sub else path

    def _selectors(self, kind: resources.Kind[Any], match: Mapping[str, str] | None) -> tuple[str, dict[str, str]]:
        """(field selector for the server, the rest of ``match`` to filter here)."""
        if not match:
            return "", {}
        server = codec.codec(kind).field_selectors or {}
        fields, local = [], {}
        for index, value in match.items():
            if index not in kind.indexes:
                raise errors.InvalidArgument(f"{kind.name} has no index {index!r}")
            if index in server:
                fields.append(f"{server[index]}={value}")
            else:
                local[index] = value
        return ",".join(fields), local

    # --- the port ---
    def get(self, kind: resources.Kind[Any], name: str, *, namespace: str = "") -> Any:
        self.requests[f"GET {kind.name}"] += 1
        try:
            return codec.codec(kind).decode(
                self._json("GET", self._path(kind, name, namespace), _what(kind, name, namespace))
            )
        except errors.NotFound:
            return None

    def list_of(
        self, kind: resources.Kind[Any], *, namespace: str | None = None, match: Mapping[str, str] | None = None
    ) -> list[Any]:
        items, _version = self._list(kind, namespace or "", match)
        return items

    def _list(
        self, kind: resources.Kind[Any], namespace: str, match: Mapping[str, str] | None
    ) -> tuple[list[Any], str]:
        self.requests[f"LIST {kind.name}"] += 1
        fields, local = self._selectors(kind, match)
        query = [("fieldSelector", fields)] if fields else []
        listed = self._json("GET", codec.codec(kind).route.collection(namespace), f"{kind.name} list", query=query)
        decode = codec.codec(kind).decode
        items = [decode(item) for item in listed.get("items") or ()]
        if local:
            items = [o for o in items if all(v in kind.keys(o, k) for k, v in local.items())]
        return items, listed.get("metadata", {}).get("resourceVersion", "")

    def create(self, obj: Any) -> Any:
        kind = resources.kind_of(obj)
        store.check_scope(kind, obj.meta)
        c = codec.codec(kind)
        body = c.encode(obj)
        body["metadata"].pop("resourceVersion", None)
        body.pop("status", None)  # written through the status subresource only
        self.requests[f"CREATE {kind.name}"] += 1
        path = c.route.collection(obj.meta.namespace)
        return c.decode(self._json("POST", path, _what(kind, obj.meta.name, obj.meta.namespace), body=body))

    def update(self, obj: Any) -> Any:
        kind = resources.kind_of(obj)
        c = codec.codec(kind)
        self.requests[f"UPDATE {kind.name}"] += 1
        path = self._path(kind, obj.meta.name, obj.meta.namespace)
        return c.decode(self._json("PUT", path, _what(kind, obj.meta.name, obj.meta.namespace), body=c.encode(obj)))

    def update_status(self, obj: Any) -> Any:
        kind = resources.kind_of(obj)
        c = codec.codec(kind)
        if c.encode_status is None or not kind.status:
            raise errors.InvalidArgument(f"{kind.name} has no status subresource")
        self.requests[f"UPDATE {kind.name}/status"] += 1
        path = self._path(kind, obj.meta.name, obj.meta.namespace, "status")
        what = _what(kind, obj.meta.name, obj.meta.namespace) + " status"
        return c.decode(self._json("PUT", path, what, body=c.encode_status(obj)))

    def delete(self, kind: resources.Kind[Any], name: str, *, namespace: str = "") -> None:
        self.requests[f"DELETE {kind.name}"] += 1
        self._json("DELETE", self._path(kind, name, namespace), _what(kind, name, namespace))

    def watch(
        self, kind: resources.Kind[Any], listener: ports.EventListener[Any], *, match: Mapping[str, str] | None = None
    ) -> ports.Subscription:
        return _Watch(self, kind, listener, match)

    def bind_pod(self, *, namespace: str, name: str, node: str) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name, "namespace": namespace},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        self.requests["CREATE Pod/binding"] += 1
        self._json(
            "POST", self._path(workloads.POD, name, namespace, "binding"), f"Pod {namespace}/{name} binding", body=body
        )


class _Watch:
    """List (now, in the caller's thread), then watch from the list's resourceVersion on a daemon thread."""

    def __init__(
        self,
        cluster: KubeCluster,
        kind: resources.Kind[Any],
        listener: ports.EventListener[Any],
        match: Mapping[str, str] | None,
    ) -> None:
        self._cluster, self._kind, self._listener = cluster, kind, listener
        self._match = dict(match or {})
        self._fields, self._local = cluster._selectors(kind, match)
        self._known: dict[tuple[str, str], Any] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()  # between close() and the thread opening a response
        self._response: Any = None
        version = self._relist()  # raises Unavailable if the server cannot be read: the caller decides
        self._thread = threading.Thread(target=self._run, args=(version,), name=f"watch-{kind.name}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        with self._lock:
            self._stop.set()
            response = self._response
        if response is not None:
            _shut(response)

    def _opened(self, response: Any) -> bool:
        """Hold ``response`` for ``close``; False (and the response shut) when the watch was closed meanwhile."""
        with self._lock:
            self._response = response
            if not self._stop.is_set():
                return True
        _shut(response)
        return False

    def _selected(self, obj: Any) -> bool:
        return all(v in self._kind.keys(obj, k) for k, v in self._local.items())

    def _emit(self, kind: resources.EventType, obj: Any) -> None:
        key = (obj.meta.namespace, obj.meta.name)
        if kind is resources.EventType.DELETED:
            if self._known.pop(key, None) is None:
                return  # never reported to this watch
        elif not self._selected(obj):
            if self._known.pop(key, None) is None:
                return
            kind = resources.EventType.DELETED  # stopped matching
        else:
            if key not in self._known and kind is resources.EventType.MODIFIED:
                kind = resources.EventType.ADDED
            self._known[key] = obj
        try:
            self._listener(resources.Event(kind, obj))
        except Exception:
            log.exception("%s watch listener failed", self._kind.name)

    def _relist(self) -> str:
        items, version = self._cluster._list(self._kind, "", self._match)
        present = {(o.meta.namespace, o.meta.name) for o in items}
        for key, gone in list(self._known.items()):
            if key not in present:
                self._emit(resources.EventType.DELETED, gone)  # deleted while we were not watching
        for obj in items:
            old = self._known.get((obj.meta.namespace, obj.meta.name))
            if old is None:
                self._emit(resources.EventType.ADDED, obj)
            elif old.meta.resource_version != obj.meta.resource_version:
                self._emit(resources.EventType.MODIFIED, obj)
        return version

    def _run(self, version: str) -> None:
        delay = 0.2
        while not self._stop.is_set():
            try:
                version = self._follow(version or self._relist())
                delay = 0.2
                continue
            except Exception as exc:
                if self._stop.is_set():
                    return
                log.warning("%s watch failed (%s); retrying in %.1fs", self._kind.name, exc, delay)
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, 10.0)

    def _follow(self, version: str) -> str:
        """One watch request from ``version``; returns where to resume ("" to list again after a 410 Gone)."""
        query = [
            ("watch", "1"),
            ("resourceVersion", version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(WATCH_SECONDS)),
        ]
        if self._fields:
            query.append(("fieldSelector", self._fields))
        self._cluster.requests[f"WATCH {self._kind.name}"] += 1
        path = codec.codec(self._kind).route.collection("")
        response = self._cluster._call("GET", path, query=query, timeout=(10, WATCH_SECONDS + 30), stream=True)
        if not self._opened(response):
            return version  # closed while the request was on its way
        if response.status == 410:
            return ""
        if response.status != 200:
            raise _error(response.status, response.read(), f"{self._kind.name} watch")
        decode = codec.codec(self._kind).decode
        for event in _lines(response):
            if self._stop.is_set():
                break
            raw = event.get("object") or {}
            if event.get("type") == "ERROR":
                return "" if raw.get("code") == 410 else version  # 410: too old, list again
            version = (raw.get("metadata") or {}).get("resourceVersion", version)
            if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                self._emit(resources.EventType(event["type"]), decode(raw))
        return version


def _shut(response: Any) -> None:
    with contextlib.suppress(Exception):
        response.shutdown() if hasattr(response, "shutdown") else response.close()


def _lines(response: Any) -> Iterator[JsonDict]:
    buffer = bytearray()
    for chunk in response.stream(amt=None, decode_content=False):
        buffer.extend(chunk)
        while (end := buffer.find(b"\n")) != -1:
            line, buffer = bytes(buffer[:end]), buffer[end + 1 :]
            if line.strip():
                yield json.loads(line)
