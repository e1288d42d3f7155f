"""A model of kube-scheduler v1.37's scheduling cycle for the simulator (docs/simulator-kube-scheduler.md).

``model.KubeScheduler`` is the entry point; ``api`` holds its configuration, inputs and results; ``fake`` a
scripted extender for tests.
"""
