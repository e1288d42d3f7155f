"""An end-to-end Kubernetes cluster on loopback for tests, without Docker or kubelets.

``ControlPlane`` (etcd + kube-apiserver: RBAC, certificates generated, static tokens) plus
- **kube-controller-manager**, as the user ``system:kube-controller-manager`` with
  ``--use-service-account-credentials`` (each controller under its own ServiceAccount in kube-system, as kubeadm
  runs it) and only the controllers the storage flow needs (``CONTROLLERS``: PV binder and expander, PV/PVC
  protection, garbage collector, namespace, node lifecycle, pod GC, taint eviction, ReplicaSet/Deployment/
  StatefulSet, ServiceAccount);
- **kube-scheduler** with deploy/scheduler-config.yaml as shipped (its extender's ``urlPrefix`` can be pointed
  elsewhere with ``extender_url``), as the user ``system:kube-scheduler``;
- **kwok** standing in for the kubelets of the Nodes labelled ``kwok.x-k8s.io/node=fake`` (``add_node``): it
  makes them Ready, renews their Leases in kube-node-lease and moves their pods to Running (and deletes them when
  deleted), with kwokctl's default Stages (``ci/peers/build.sh kwok`` copies them out of kwok's module), as the
  user ``kwok-controller`` bound to kwok's own ClusterRole.

Leader election is off for both controllers (one instance each: a lost lease on a loaded machine would only make
them exit). The ``ServiceAccount`` admission plugin stays off (as in ``ControlPlane``), so pods need no token.

Usable without pytest::

    with Cluster() as cluster:                 # everything started and ready, or stopped again and raised
        cluster.add_node("n1"); cluster.wait_node_ready("n1")
        print(cluster.kubeconfig)              # the admin's
    # every process stopped (SIGTERM, then SIGKILL), temp dir removed: also when the block raises

and from the shell (the processes keep running between ``up`` and ``down``; ``tests/support/cluster_cli.py``)::

    python -m tests.support.cluster_cli up --dir /tmp/e2e --nodes 3   # prints the admin kubeconfig's path
    python -m tests.support.cluster_cli status --dir /tmp/e2e
    python -m tests.support.cluster_cli down --dir /tmp/e2e
    python -m tests.support.cluster_cli run --nodes 3                  # in the foreground, until Ctrl-C

Binaries are found like ``ControlPlane``'s, by tests/support/peers.py (``TEST_ASSET_KUBE_CONTROLLER_MANAGER``...,
``$KUBEBUILDER_ASSETS``, the peers cache); ``find_cluster_binaries`` (tests/support/cluster_peers.py) says what is
missing and how to build it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.support import cluster_components as parts
from tests.support import deployment, processes
from tests.support.cluster_components import (
    ATTACH_DETACH_ANNOTATION,
    KCM_USER,
    KWOK_LABEL,
    KWOK_LABEL_VALUE,
    KWOK_USER,
    SCHEDULER_USER,
    ClusterError,
    Component,
    tail,
)
from tests.support.cluster_peers import (
    KUBE_CONTROLLER_MANAGER,
    KUBE_SCHEDULER,
    KWOK,
    ClusterBinaries,
    find_cluster_binaries,
)
from tests.support.controlplane import ControlPlane
from tests.support.processes import free_port

__all__ = ["KWOK_LABEL", "Cluster", "ClusterError", "Component", "free_port"]

REPO = Path(__file__).resolve().parents[2]


class Cluster:
    """The cluster's processes. ``start()``/``stop()``, or a context manager.

    Attributes once started: ``plane`` (the ``ControlPlane``: ``request``, ``url``, ``ca_file``...),
    ``kubeconfig`` (the admin's, system:masters), ``kubeconfigs`` (component name -> its own kubeconfig),
    ``workdir`` (every log: etcd.log, kube-apiserver.log, kube-controller-manager.log, kube-scheduler.log,
    kwok.log).
    """

    def __init__(
        self,
        binaries: ClusterBinaries | None = None,
        workdir: str | os.PathLike[str] | None = None,
        *,
        extender_url: str | None = None,
        start_timeout: float = 120.0,
        verbosity: int = 2,
        address: str = "127.0.0.1",
        kubelets: bool = False,
    ) -> None:
        """``kubelets``: for real kubelets instead of kwok (tests/support/hil_node.py): kube-apiserver configured
        for pods on ``address`` (``ControlPlane``), no kwok, and the controllers pods need (``KUBELET_CONTROLLERS``)."""
        found = binaries or find_cluster_binaries()
        if isinstance(found, str):
            raise ClusterError(found)
        self.binaries = found
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="topolvm-e2e-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.extender_url = extender_url
        self.start_timeout = start_timeout
        self.verbosity = verbosity
        self.kubelets = kubelets
        self.plane = ControlPlane(
            found.control_plane, self.workdir, start_timeout=start_timeout, address=address, kubelets=kubelets
        )
        users = {KUBE_CONTROLLER_MANAGER: KCM_USER, KUBE_SCHEDULER: SCHEDULER_USER}
        if not kubelets:
            users[KWOK] = KWOK_USER
        self._tokens = {name: secrets.token_hex(16) for name in users}
        for name, user in users.items():
            self.plane.add_token(self._tokens[name], user)
        self.kubeconfigs: dict[str, str] = {}
        self.components: list[Component] = []

    @property
    def kubeconfig(self) -> str:
        return self.plane.kubeconfig

    # --- lifecycle

    def start(self) -> Cluster:
        try:
            self.plane.start()
            for name, token in self._tokens.items():
                path = self.workdir / f"{name}.kubeconfig"
                self.kubeconfigs[name] = deployment.write_kubeconfig(self.plane, token, path)
            components = [parts.kube_controller_manager(self), parts.kube_scheduler(self)]
            if not self.kubelets:
                parts.bind_kwok_role(self)
                components.append(parts.kwok(self))
            for component in components:
                self.components.append(component)
                self._start(component)
            # The controllers run once the manager has their ServiceAccounts' tokens: the serviceaccount
            # controller's first work is the default namespace's "default" ServiceAccount.
            self._wait(
                lambda: self.plane.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
                "kube-controller-manager's controllers to run (ServiceAccount default/default)",
                self.components[0],
            )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every process (kwok and the controllers first, the control plane last) and remove the temp dir.
        Idempotent."""
        for component in reversed(self.components):
            proc, component.proc = component.proc, None
            if proc is not None:
                processes.stop_process(proc)
        self.plane.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def problems(self) -> list[str]:
        """The components that exited, with their exit codes (empty while all run)."""
        return [
            f"{c.name} exited with {c.proc.returncode}"
            for c in self.components
            if c.proc is not None and c.proc.poll() is not None
        ]

    def logs(self) -> list[Path]:
        return sorted(self.workdir.glob("*.log"))

    def log_tails(self, chars: int = 3000) -> str:
        return "\n".join(f"--- {path.name} (last {chars} characters)\n{tail(path, chars)}" for path in self.logs())

    # --- components

    def run(
        self,
        name: str,
        argv: Callable[[int], list[str]],
        ready: Callable[[int], bool],
        env: dict[str, str] | None = None,
    ) -> Component:
        """Start one more process with the cluster's (a free port for ``argv``, its log in ``workdir/NAME.log``,
        readiness awaited, stopped before the cluster's own, counted by ``problems``)."""
        component = Component(name, argv, ready, env=env)
        self.components.append(component)
        self._start(component)
        return component

    def restart(self, name: str) -> Component:
        """Start the last component called ``name`` again after it was killed (same argv function and log)."""
        component = next(c for c in reversed(self.components) if c.name == name)
        if component.proc is not None and component.proc.poll() is None:
            raise ClusterError(f"{name} is still running")
        self._start(component)
        return component

    def restart_kube_scheduler(self, **changes: Any) -> None:
        """kube-scheduler stopped and started again with deploy/scheduler-config.yaml's top-level fields set by
        ``changes`` (``parallelism=1``); no changes: as shipped. It learns Nodes and pods anew."""
        component = next(c for c in reversed(self.components) if c.name == KUBE_SCHEDULER)
        proc, component.proc = component.proc, None
        if proc is not None:
            processes.stop_process(proc)
        parts.write_scheduler_config(self, changes)
        self.restart(KUBE_SCHEDULER)

    def _start(self, component: Component) -> None:
        """Start ``component`` on a free port and wait until it is ready; another port if that one was taken."""
        log = self.workdir / f"{component.name}.log"
        for attempt in range(3):
            component.port = free_port()
            component.proc = processes.spawn(component.argv(component.port), log, self.workdir, component.env)
            try:
                self._wait(lambda: component.ready(component.port), f"{component.name} to be ready", component)
                return
            except ClusterError:
                if attempt < 2 and "address already in use" in tail(log, 4000):
                    processes.stop_process(component.proc)
                    continue
                raise

    def _wait(self, ready: Callable[[], bool], what: str, component: Component) -> None:
        deadline = time.monotonic() + self.start_timeout
        log = self.workdir / f"{component.name}.log"
        while time.monotonic() < deadline:
            if component.proc is not None and component.proc.poll() is not None:
                raise ClusterError(
                    f"{component.name} exited with {component.proc.returncode} while waiting for {what}; "
                    f"last log lines:\n{tail(log, 3000)}"
                )
            if ready():
                return
            time.sleep(0.2)
        raise ClusterError(f"timed out after {self.start_timeout:.0f}s waiting for {what}; log:\n{tail(log, 3000)}")

    # --- objects

    def request(self, method: str, path: str, body: object | None = None, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        """``ControlPlane.request`` as the admin."""
        return self.plane.request(method, path, body, **kwargs)

    def get(self, path: str) -> dict[str, Any] | None:
        """The object at ``path``, or None when the API server answers anything but 200."""
        code, reply = self.request("GET", path)
        return reply if code == 200 else None

    def add_node(
        self,
        name: str,
        *,
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
        allocatable: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Register a Node kwok manages, as its kubelet would (``kubernetes.io/hostname``, capacity in the status:
        kwok's default is 1k CPUs, 1 TiB, 1M pods). kwok makes it Ready; ``wait_node_ready`` waits for that."""
        node: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {"kubernetes.io/hostname": name, KWOK_LABEL: KWOK_LABEL_VALUE, **(labels or {})},
                # kubelet's own on registration (attach/detach by the controller manager); upstream TopoLVM's
                # node agent panics on a Node without any annotation (v0.41.0, metrics_exporter.go)
                "annotations": {
                    ATTACH_DETACH_ANNOTATION: "true",
                    **(annotations or {}),
                },
            },
        }
        if allocatable:
            node["status"] = {"allocatable": allocatable, "capacity": allocatable}
        code, reply = self.request("POST", "/api/v1/nodes", node)
        if code != 201:
            raise ClusterError(f"creating Node {name}: HTTP {code}: {reply.get('message')}")
        return reply

    def wait_node_ready(self, name: str, timeout: float = 60.0) -> dict[str, Any]:
        """The Node once its Ready condition is True (kwok) and it has no taint left (the not-ready taint the
        TaintNodesByCondition admission plugin put on it is removed by node-lifecycle-controller)."""

        def ready() -> dict[str, Any] | None:
            code, node = self.request("GET", f"/api/v1/nodes/{name}")
            if code != 200:
                return None
            conditions = node.get("status", {}).get("conditions") or []
            is_ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
            return node if is_ready and not node["spec"].get("taints") else None

        node: dict[str, Any] = self.wait_for(ready, f"Node {name} to be Ready and untainted", timeout)
        return node

    def wait_for(self, predicate: Callable[[], Any], what: str, timeout: float = 60.0, interval: float = 0.2) -> Any:
        """``predicate()``'s first truthy value; fails after ``timeout`` seconds, or at once when a component
        exited, with that and the logs' tails."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            problems = self.problems()
            if problems or time.monotonic() > deadline:
                why = "; ".join(problems) or f"timed out after {timeout:.0f}s"
                raise AssertionError(f"{why} waiting for {what}\n{self.log_tails()}")
            time.sleep(interval)


# --- pytest


try:
    import pytest
except ImportError:  # pragma: no cover - the helper works without pytest; only the fixture needs it
    pass
else:
    from tests.support import prerequisites

    def cluster_binaries_or_skip() -> ClusterBinaries:
        """The cluster's binaries; else skip with the reason, or fail with it in CI (CI=true/1/yes)."""
        found = find_cluster_binaries()
        if isinstance(found, str):
            prerequisites.missing(
                f"end-to-end cluster unavailable: {found}", ci=f"the end-to-end cluster cannot start in CI: {found}"
            )
        return found

    @pytest.fixture(scope="session")
    def kube_cluster() -> Iterator[Cluster]:
        """A started ``Cluster`` for the session (under pytest-xdist, one per worker). Tests share it: each
        registers its own Nodes (``add_node``) and pins its pods to them."""
        # kube-scheduler calls the extender at a free port; tests/support/stack.py starts it there when a test
        # needs TopoLVM (pods without TopoLVM volumes never reach it).
        with Cluster(cluster_binaries_or_skip(), extender_url=f"http://127.0.0.1:{free_port()}") as cluster:
            yield cluster


if __name__ == "__main__":
    from tests.support import cluster_cli

    sys.exit(cluster_cli.main())
