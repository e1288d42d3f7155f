"""Pod mutating admission webhook (entrypoint): makes pods that need TopoLVM capacity visible to the extender.

``wire`` holds the AdmissionReview types, ``quantity`` parses Kubernetes quantities, ``ports`` declares the
lookups the webhook needs (PVCs, StorageClasses, namespace labels) with an in-memory fake, ``kube`` adapts the
kubernetes client to it, ``mutate`` decides the patch, ``app`` serves HTTPS and ``cli`` is the command.
"""
