"""Pod mutating webhook (entrypoint): makes pods that need TopoLVM capacity visible to the extender.

``wire`` holds the AdmissionReview envelope, ``mutate`` turns a request into an answer (the decision itself is
``topolvm.services.admission``, shared with the simulator), ``kube`` caches the PVCs, StorageClasses and
Namespaces it reads, ``app`` serves HTTPS and ``cli`` is the command.
"""
