"""Write a one-layer container image as a docker-archive (what ``docker save`` writes and ``ctr image import``,
``docker load`` and ``podman load`` read), in Python, without a container engine.

Used by ``harness.node_profile`` for the HIL node's small images: the pause container, the workload image
(busybox) and the upstream CSI sidecars built by ci/peers/build.sh, each a few static files::

    write(Path("pause.tar"), "registry.k8s.io/pause:3.10", {"pause": Path(".../bin/pause")}, entrypoint=["/pause"])

The archive holds ``manifest.json`` (RepoTags: the name containerd gives the image), the image config
(``<sha256>.json``: architecture, os, entrypoint, user, the layer's diff ID) and the layer (``<sha256>/layer.tar``,
uncompressed). Timestamps are fixed, so the same files give the same archive, byte for byte.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path

_EPOCH = 0  # fixed mtime: reproducible layers


def _layer(files: Mapping[str, Path], symlinks: Mapping[str, str]) -> bytes:
    """An uncompressed tar layer: ``files`` (path in the image -> host file, mode kept) and symlinks; parent
    directories are added as needed."""
    buffer = io.BytesIO()
    directories: set[str] = set()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as layer:

        def add_parents(name: str) -> None:
            parts = name.split("/")[:-1]
            for depth in range(1, len(parts) + 1):
                directory = "/".join(parts[:depth])
                if directory not in directories:
                    directories.add(directory)
                    info = tarfile.TarInfo(directory)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    info.mtime = _EPOCH
                    layer.addfile(info)

        for name in sorted(files):
            relative = name.lstrip("/")
            add_parents(relative)
            host = files[name]
            info = tarfile.TarInfo(relative)
            stat = host.stat()
            info.size, info.mode = stat.st_size, stat.st_mode & 0o7777
            info.mtime = _EPOCH
            with host.open("rb") as handle:
                layer.addfile(info, handle)
        for name in sorted(symlinks):
            relative = name.lstrip("/")
            add_parents(relative)
            info = tarfile.TarInfo(relative)
            info.type = tarfile.SYMTYPE
            info.linkname = symlinks[name]
            info.mtime = _EPOCH
            layer.addfile(info)
    return buffer.getvalue()


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = _EPOCH
    archive.addfile(info, io.BytesIO(data))


def write(
    path: Path,
    reference: str,
    files: Mapping[str, Path],
    *,
    entrypoint: Sequence[str],
    symlinks: Mapping[str, str] | None = None,
    user: str = "",
) -> str:
    """Write the image ``reference`` (e.g. ``registry.k8s.io/pause:3.10``) to ``path``; return its image ID
    (the config's sha256)."""
    if ":" not in reference.rsplit("/", 1)[-1]:
        raise ValueError(f"image reference {reference!r} needs a tag")
    layer = _layer(files, symlinks or {})
    layer_digest = hashlib.sha256(layer).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": list(entrypoint), "User": user, "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
        "history": [{"created_by": "harness/image_archive.py"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_digest = hashlib.sha256(config_bytes).hexdigest()
    manifest = [{"Config": f"{config_digest}.json", "RepoTags": [reference], "Layers": [f"{layer_digest}/layer.tar"]}]
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as archive:
        _add(archive, f"{layer_digest}/layer.tar", layer)
        _add(archive, f"{config_digest}.json", config_bytes)
        _add(archive, "manifest.json", json.dumps(manifest).encode())
    return f"sha256:{config_digest}"
