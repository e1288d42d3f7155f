"""The capacity-planning simulator: TopoLVM's own services on a simpy model of a whole cluster.

Each simulated node runs the real ``LvmdService`` over ``InMemoryLvm``, the real ``LogicalVolumeReconciler`` and
``CapacityPublisher``; one real ``ControllerService`` answers the provisioner model; the real scheduling policy
answers the kube-scheduler model. Nothing here decides what TopoLVM decides — it only decides *when* (modelled
latencies) and *what happens around it* (workloads, kube-scheduler, external-provisioner, node failures).
"""
