"""harness/image_archive.py: a docker-archive whose manifest, config and layer agree (what ``ctr image import``
and ``docker load`` check), reproducible byte for byte; the HIL node suite imports these into containerd."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from harness import image_archive
from tests.support import hil_node


def test_archive_is_consistent_and_reproducible(tmp_path: Path) -> None:
    program = tmp_path / "pause"
    program.write_bytes(b"\x7fELF not really")
    program.chmod(0o755)
    first, second = tmp_path / "a.tar", tmp_path / "b.tar"
    image_id = image_archive.write(
        first, "registry.k8s.io/pause:3.10", {"pause": program}, entrypoint=["/pause"], symlinks={"bin/sh": "/pause"}
    )
    image_archive.write(
        second, "registry.k8s.io/pause:3.10", {"pause": program}, entrypoint=["/pause"], symlinks={"bin/sh": "/pause"}
    )
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as archive:
        (manifest,) = json.loads(archive.extractfile("manifest.json").read())  # type: ignore[union-attr]
        assert manifest["RepoTags"] == ["registry.k8s.io/pause:3.10"]
        config_bytes = archive.extractfile(manifest["Config"]).read()  # type: ignore[union-attr]
        assert image_id == "sha256:" + hashlib.sha256(config_bytes).hexdigest()
        assert manifest["Config"] == hashlib.sha256(config_bytes).hexdigest() + ".json"
        (layer_name,) = manifest["Layers"]
        layer = archive.extractfile(layer_name).read()  # type: ignore[union-attr]
    config = json.loads(config_bytes)
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    assert config["config"]["Entrypoint"] == ["/pause"]
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    layer_path = tmp_path / "layer.tar"
    layer_path.write_bytes(layer)
    with tarfile.open(layer_path) as members:
        entries = {m.name: m for m in members.getmembers()}
    assert entries["pause"].mode == 0o755 and entries["pause"].size == program.stat().st_size
    assert entries["bin"].isdir() and entries["bin/sh"].issym() and entries["bin/sh"].linkname == "/pause"


def test_reference_needs_a_tag(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs a tag"):
        image_archive.write(tmp_path / "x.tar", "localhost:5000/busybox", {}, entrypoint=["/bin/sh"])


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("topolvm-py:0.1.0", "docker.io/library/topolvm-py:0.1.0"),
        ("someone/app:1", "docker.io/someone/app:1"),
        ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
        ("localhost/hil-busybox:1", "localhost/hil-busybox:1"),
        ("localhost:5000/app:1", "localhost:5000/app:1"),
    ],
)
def test_image_references_as_containerd_names_them(reference: str, expected: str) -> None:
    assert hil_node.normalized(reference) == expected
