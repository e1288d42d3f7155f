"""The scheduler extender's over-commit protection (upstream #117): ``Ledger`` of capacity promised to pods.

Node annotations lag: they change only after an LV exists, so bytes promised to pods that kube-scheduler is
still placing are held here and subtracted from the annotation by ``topolvm.core.scheduling.usable``. Owned by
``topolvm.services.scheduler``; read by ``topolvm.core.node_index`` through ``scheduling.usable``.
Pure: standard library only; time enters as a ``now`` parameter (seconds, any monotonic origin).
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable, Iterable, Mapping

from topolvm import errors


class EndReason(enum.StrEnum):
    """Why a reservation ended (a label of the extender's ``reservation_ends_total`` metric)."""

    BOUND = "bound"  # the pod was bound to a node: its volumes exist, wherever they are
    CLAIMS_BOUND = "claims-bound"  # every claim of the pod has a volume (spec.volumeName): they exist
    DELETED = "deleted"  # the pod was deleted before it was bound
    PROVISIONED = "provisioned"  # without pod events: the node's annotation dropped by the reservation's size
    REHOMED = "rehomed"  # moved to the node kube-scheduler chose (a claim's selected-node annotation)
    NOT_CHOSEN = "not-chosen"  # held on one of several tied nodes; kube-scheduler chose another of them
    RESCHEDULED = "rescheduled"  # replaced by a new scheduling attempt of the same pod
    EXPIRED = "expired"  # the TTL passed without any of the above
    NODE_GONE = "node-gone"  # the node was deleted or left the extender's cache


@dataclasses.dataclass(frozen=True)
class Reservation:
    """Bytes promised to one pod on one node and class, until ``expires`` (same clock as ``now``)."""

    pod: str
    node: str
    device_class: str
    size: int
    expires: float


@dataclasses.dataclass
class _Slot:
    """Outstanding reservations of one (node, class), oldest first, and the annotation value last seen."""

    baseline: int | None
    reservations: list[Reservation] = dataclasses.field(default_factory=list)


EndListener = Callable[[Reservation, EndReason], None]


class Ledger:
    """Capacity promised to pods not yet provisioned (upstream #117), as a plain data structure.

    A pod holds its request on one node, or on each of several nodes that tied for the top score (kube-scheduler
    may pick any of them) until its choice is known: ``keep_only`` then ends the others (``NOT_CHOSEN``). Each
    (pod, node, class) is one ``Reservation``; the bytes held on a node count against every other pod there, so
    a pod held on k nodes holds k times its request in all.

    A reservation ends when its TTL passes or when the pod is released (its volumes exist, it was deleted,
    re-homed or re-reserved; the caller says why, from evidence about that pod). With ``credit_drops`` (for
    callers that see no pod or claim events) it also ends when the node's annotation for that class drops by at
    least its size, a heuristic: the drop is credited to the oldest reservations first, those of pods held on
    that node alone before those of pods held on several tied nodes (which may have gone elsewhere), and a drop
    credited to a pod is taken to show where its volume is, so its reservations on other nodes end too
    (``NOT_CHOSEN``). Any drop is credited, also one made by something else (an expansion, a thin snapshot, an LV
    made outside TopoLVM), which then ends a pending pod's hold too early. Without ``credit_drops`` the
    annotation only moves the baseline. Every end is reported to ``on_end`` with its reason. Not thread-safe: one
    caller at a time.
    """

    def __init__(self, ttl: float, on_end: EndListener | None = None, *, credit_drops: bool = True) -> None:
        if not math.isfinite(ttl) or ttl < 0:
            raise errors.ConfigError(f"reservation TTL must be a non-negative number of seconds, got {ttl!r}")
        self.ttl = ttl
        self.on_end = on_end
        self.credit_drops = credit_drops
        self._slots: dict[tuple[str, str], _Slot] = {}
        # pod -> node -> the classes it holds there, in the order taken. Invariant: (node, class) is listed here
        # exactly when the slot (node, class) holds one reservation of the pod; no empty entries.
        self._by_pod: dict[str, dict[str, list[str]]] = {}
        self._slots_per_node: dict[str, int] = {}

    def __len__(self) -> int:
        return sum(len(slot.reservations) for slot in self._slots.values())

    def __bool__(self) -> bool:
        return bool(self._slots)

    def nodes(self) -> set[str]:
        """Nodes with at least one outstanding reservation (a new set)."""
        return set(self._slots_per_node)

    def holds(self, node: str) -> bool:
        return node in self._slots_per_node

    def reserved_bytes(self) -> int:
        """Bytes held over all (node, class): a pod held on several tied nodes counts on each of them."""
        return sum(r.size for slot in self._slots.values() for r in slot.reservations)

    def pod_count(self) -> int:
        """Pods holding at least one reservation."""
        return len(self._by_pod)

    def nodes_of(self, pod: str) -> tuple[str, ...]:
        """The nodes ``pod`` holds reservations on: one, several that tied, or none."""
        return tuple(self._by_pod.get(pod, ()))

    def requests_of(self, pod: str) -> dict[str, int]:
        """What ``pod`` holds per class on any one of its nodes (empty when it holds nothing)."""
        result: dict[str, int] = {}
        for node, classes in self._by_pod.get(pod, {}).items():
            for device_class in classes:
                slot = self._slots.get((node, device_class))
                sizes = [r.size for r in slot.reservations if r.pod == pod] if slot is not None else []
                result[device_class] = max([result.get(device_class, 0), *sizes])
        return result

    def reserve(
        self,
        pod: str,
        node: str,
        requests: Mapping[str, int],
        observed: Mapping[str, int | None],
        now: float,
        *,
        replaced: EndReason = EndReason.RESCHEDULED,
    ) -> list[Reservation]:
        """Hold ``requests`` for ``pod`` on ``node`` alone (``observed``: the node's annotation per class now)."""
        return self.reserve_on(pod, {node: observed}, requests, now, replaced=replaced)

    def reserve_on(
        self,
        pod: str,
        nodes: Mapping[str, Mapping[str, int | None]],
        requests: Mapping[str, int],
        now: float,
        *,
        replaced: EndReason = EndReason.RESCHEDULED,
    ) -> list[Reservation]:
        """Hold ``requests`` for ``pod`` on each of ``nodes`` (node -> its annotation per class right now).

        Whatever the pod already holds ends first, with reason ``replaced``. Returns what was reserved.
        """
        self.release(pod, replaced)
        if self.ttl == 0:
            return []
        held: dict[str, list[str]] = {}
        made: list[Reservation] = []
        for node, observed in nodes.items():
            for device_class, size in requests.items():
                if size <= 0:
                    continue
                key = (node, device_class)
                slot = self._slots.get(key)
                if slot is None:
                    slot = self._slots[key] = _Slot(baseline=observed.get(device_class))
                    self._slots_per_node[node] = self._slots_per_node.get(node, 0) + 1
                reservation = Reservation(pod, node, device_class, size, now + self.ttl)
                slot.reservations.append(reservation)
                made.append(reservation)
                held.setdefault(node, []).append(device_class)
        if held:
            self._by_pod[pod] = held
        return made

    def release(self, pod: str, reason: EndReason) -> int:
        """End every reservation of ``pod``; returns how many ended."""
        return self._end(pod, list(self._by_pod.get(pod, ())), reason)

    def keep_only(self, pod: str, node: str, reason: EndReason = EndReason.NOT_CHOSEN) -> int:
        """kube-scheduler chose ``node`` for ``pod``: end its reservations on every other node (those it held
        there keep holding); returns how many ended."""
        return self._end(pod, [name for name in self._by_pod.get(pod, ()) if name != node], reason)

    def release_node(self, node: str, reason: EndReason) -> int:
        """End every reservation on ``node`` (pods also held on other nodes keep those); returns how many ended."""
        pods = {r.pod for (name, _), slot in self._slots.items() if name == node for r in slot.reservations}
        return sum(self._end(pod, [node], reason) for pod in sorted(pods))

    def held(self, node: str, device_class: str, observed: int | None, now: float, exclude: str = "") -> int:
        """Bytes held on (node, class) for pods other than ``exclude``, after crediting annotation drops."""
        key = (node, device_class)
        slot = self._slots.get(key)
        if slot is None:
            return 0
        self._settle(key, slot, observed, now)
        return sum(r.size for r in slot.reservations if r.pod != exclude)

    def settle(self, node: str, observed: Mapping[str, int | None], now: float) -> None:
        """Credit a new annotation value of ``node`` (per class) to its reservations now, not at the next look."""
        for device_class, value in observed.items():
            key = (node, device_class)
            slot = self._slots.get(key)
            if slot is not None:
                self._settle(key, slot, value, now)

    def expire(self, now: float) -> int:
        """Drop every reservation past its TTL; returns how many were dropped (for housekeeping and metrics)."""
        dropped = 0
        for key, slot in list(self._slots.items()):
            before = len(slot.reservations)
            self._settle(key, slot, slot.baseline, now)
            dropped += before - len(slot.reservations)
        return dropped

    def reservations(self) -> Iterable[Reservation]:
        for slot in self._slots.values():
            yield from slot.reservations

    def _end(self, pod: str, nodes: Iterable[str], reason: EndReason) -> int:
        held = self._by_pod.get(pod)
        if held is None:
            return 0
        ended: list[Reservation] = []
        for node in nodes:
            for device_class in held.pop(node, ()):
                key = (node, device_class)
                slot = self._slots.get(key)
                if slot is None:
                    continue
                ended.extend(r for r in slot.reservations if r.pod == pod)
                slot.reservations = [r for r in slot.reservations if r.pod != pod]
                if not slot.reservations:
                    self._drop_slot(key)
        if not held:
            del self._by_pod[pod]
        for r in ended:
            self._ended(r, reason)
        return len(ended)

    def _settle(self, key: tuple[str, str], slot: _Slot, observed: int | None, now: float) -> None:
        ended: list[tuple[Reservation, EndReason]] = []
        kept: list[Reservation] = []
        for r in slot.reservations:
            if r.expires > now:
                kept.append(r)
            else:
                ended.append((r, EndReason.EXPIRED))
        credited: list[Reservation] = []
        if self.credit_drops and observed is not None and slot.baseline is not None and observed < slot.baseline:
            credited = self._credit(kept, slot.baseline - observed)
            if credited:
                gone = set(map(id, credited))
                kept = [r for r in kept if id(r) not in gone]
                ended.extend((r, EndReason.PROVISIONED) for r in credited)
        if observed is not None:
            slot.baseline = observed
        if ended:
            slot.reservations = kept
            for r, _ in ended:
                self._forget(r.pod, key)
            for r, reason in ended:
                self._ended(r, reason)
        if not kept:
            self._drop_slot(key)
        for r in credited:  # the volume exists on this node: the pod's holds on tied nodes are spent
            self.keep_only(r.pod, key[0])

    def _credit(self, reservations: list[Reservation], drop: int) -> list[Reservation]:
        """The reservations a drop of ``drop`` bytes is credited to: oldest first, pods held on this node alone
        before pods also held on other nodes, as long as each fits in what is left of the drop."""
        order = sorted(reservations, key=lambda r: len(self._by_pod.get(r.pod, ())) > 1)  # stable: oldest first
        credited: list[Reservation] = []
        for r in order:
            if r.size > drop:
                break
            drop -= r.size
            credited.append(r)
        return credited

    def _drop_slot(self, key: tuple[str, str]) -> None:
        if self._slots.pop(key, None) is None:
            return
        node = key[0]
        left = self._slots_per_node[node] - 1
        if left:
            self._slots_per_node[node] = left
        else:
            del self._slots_per_node[node]

    def _ended(self, reservation: Reservation, reason: EndReason) -> None:
        if self.on_end is not None:
            self.on_end(reservation, reason)

    def _forget(self, pod: str, key: tuple[str, str]) -> None:
        held = self._by_pod.get(pod)
        classes = held.get(key[0]) if held is not None else None
        if held is None or classes is None or key[1] not in classes:
            return
        classes.remove(key[1])
        if not classes:
            del held[key[0]]
            if not held:
                del self._by_pod[pod]
