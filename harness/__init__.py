"""Hardware-in-the-loop harness: a Debian VM with a real kernel, device-mapper and emulated NVMe disks.

Host side: ``image`` builds and caches the VM image, ``vm`` boots it, ``runner`` ships the source tree in,
runs a command (usually pytest) and brings results back, ``junit``/``report`` turn in-VM results into
ordinary pytest reports. Guest side: ``agent`` is the VM's init, ``faults`` breaks PVs for tests.
"""
