"""kube-scheduler extender (entrypoint): HTTP verbs /predicate, /prioritize, /status and /metrics.

Wire types in ``wire``, configuration in ``config``, the verbs (translation only) in ``verbs``, the process's
``SchedulerService`` and its lock in ``holder``, API watches in ``kube``, the ASGI app (and its expiry timer) in
``app`` and the ``topolvm-scheduler`` command in ``cli``. Decisions come from ``topolvm.services.scheduler``.
"""
