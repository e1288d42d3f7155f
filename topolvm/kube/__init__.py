"""``Cluster`` adapters: in-memory (``memory``) today; the kubernetes-client one lands with the CSI driver."""
