"""kube-scheduler extender (entrypoint): HTTP verbs /predicate, /prioritize, /status and /metrics.

Wire types in ``wire``, configuration in ``config``, node cache and reservations in ``holder``, the ASGI app in
``app`` and the ``topolvm-scheduler`` command in ``cli``. Policy comes from ``topolvm.core.scheduling``.
"""
