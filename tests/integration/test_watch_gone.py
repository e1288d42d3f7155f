"""A KubeCluster watch that the real kube-apiserver answers with 410 Gone (its resourceVersion is older than the
server keeps) lists again and reports, as DELETED, what vanished while it was not watching: the controllers
and the extender's ledger would otherwise keep objects that no longer exist (issue 9, step 4).

The disconnection is made by stopping the watch's thread; the resumption is the watch's own code path (one
request from an old resourceVersion, then the re-list), against the real server.
"""

from __future__ import annotations

import queue
import uuid

from tests.contract.test_cluster_contract import new_lv
from tests.support.controlplane import ControlPlane
from topolvm.core import resources
from topolvm.kube import client

LV = resources.LOGICAL_VOLUME


def test_a_watch_told_410_gone_lists_again_and_reports_what_vanished(kube_api: ControlPlane) -> None:
    kube_api.install_crds()
    api = client.api_client(kube_api.kubeconfig)
    cluster = client.KubeCluster(api)
    tag = uuid.uuid4().hex[:6]
    kept, vanished, appeared = (f"w{tag}-{n}" for n in ("kept", "vanished", "appeared"))
    events: queue.Queue[resources.Event[resources.LogicalVolume]] = queue.Queue()
    try:
        cluster.create(new_lv(kept))
        cluster.create(new_lv(vanished))
        watch = cluster.watch(LV, events.put)
        assert isinstance(watch, client._Watch)
        replayed = {e.object.name for e in list(events.queue) if e.type is resources.EventType.ADDED}
        assert {kept, vanished} <= replayed
        watch.close()  # the connection is lost
        watch._thread.join(timeout=15)
        assert not watch._thread.is_alive()
        while not events.empty():
            events.get_nowait()

        cluster.delete(LV, vanished)  # while nobody watches
        cluster.create(new_lv(appeared))

        watch._stop.clear()  # resuming, as its thread would after a reconnect
        assert watch._follow("1") == ""  # the real server: resourceVersion 1 is too old (410 Gone): list again
        assert events.empty()
        watch._relist()
        seen = {(e.type, e.object.name) for e in list(events.queue) if e.object.name.startswith(f"w{tag}-")}
        assert seen == {(resources.EventType.DELETED, vanished), (resources.EventType.ADDED, appeared)}
    finally:
        for name in (kept, vanished, appeared):
            try:
                cluster.delete(LV, name)
            except Exception:  # already gone
                continue
        api.close()
