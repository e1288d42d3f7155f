"""Real ``Lvm`` adapter over the lvm2 command line (``LvmCli``), and the in-memory one (``memory``).

``command`` runs lvm (one path for every call), ``parse`` turns JSON reports into ``topolvm.core.model``,
``classify`` maps failures to domain errors, ``cli`` implements the port.
"""
