"""The HIL node profile: what turns the HIL VM into a one-node Kubernetes cluster with a real kubelet.

The VM image (harness/image.py) carries the Debian side: containerd, runc, the CNI plugins, iptables. This
module builds the rest into one read-only ext4 disk, attached to the VM with serial ``hil-node`` and mounted by
the guest (tests/support/hil_node.py) at /opt/hil-node::

    bin/       etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, snapshot-controller
               (ci/peers/build.sh)
    manifests/ what snapshot-controller needs in the cluster: external-snapshotter's CRDs and its RBAC
    images/    docker-archives for ``ctr -n k8s.io image import``: our pause container (registry.k8s.io/pause),
               the workload image (busybox), the upstream CSI sidecars the chart names (built from their
               upstream tags by ci/peers/build.sh, named as the chart's image.csi values name them),
               topolvm-py's own image (harness/container_image.py), and upstream TopoLVM's hypertopolvm with
               busybox's nsenter (the baseline of tests/hil/node/bench_lvm_calls.py)
    profile.json  what is where: images with their references, binaries, the pause and workload references

    python -m harness.node_profile build      # build if missing (needs the peers, podman, busybox-static)
    python -m harness.node_profile path       # the disk image if built for the current inputs

The disk is cached as ``<cache>/node-v1-<hash>/node.img``; the hash covers the content of every file that goes
in (binaries by digest, topolvm-py by its image key), so a rebuilt peer or a changed ``topolvm/`` makes a new
disk; older ones are removed once a new one is published. No root is needed (``mkfs.ext4 -d``), except for
podman when topolvm-py's image must be built first.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from harness import cache, container_image, image_archive

PROFILE_VERSION = 1  # bump when this builder or harness/image_archive.py changes what goes on the disk
SERIAL = "hil-node"
MOUNT_POINT = "/opt/hil-node"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "snapshot-controller")
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
WORKLOAD_IMAGE = "localhost/hil-busybox:1"
UPSTREAM_IMAGE = "localhost/hypertopolvm:v0.41.0"  # ci/peers/build.sh's TOPOLVM_VERSION
BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static (scripts/install-system-deps.sh)
# The chart's image.csi values whose sidecars the node runs, and the peers binary of each: the binary is built
# from the same upstream tag as the image the chart names (ci/peers/build.sh, NAME-VERSION).
SIDECARS = {"csiProvisioner": "csi-provisioner", "csiResizer": "csi-resizer", "csiSnapshotter": "csi-snapshotter"}
VALUES = cache.REPO_ROOT / "deploy" / "helm" / "topolvm" / "values.yaml"
BUSYBOX_APPLETS = (
    *("sh", "cat", "echo", "printf", "sleep", "dd", "df", "ls", "mkdir", "sync", "stat", "head", "tail", "wc"),
    *("test", "grep", "tr", "cut", "true", "false"),
)


@dataclasses.dataclass(frozen=True)
class Profile:
    directory: Path
    disk: Path
    manifest: dict[str, object]


def peers_bin() -> Path:
    return cache.cache_root() / "peers-v1" / "bin"


def manifests() -> dict[str, Path]:
    """Name on the disk -> file: the VolumeSnapshot CRDs and snapshot-controller's RBAC (both copied out of
    external-snapshotter's module by ci/peers/build.sh crds snapshot-controller)."""
    crds = peers_bin().parent / "crds" / "external-snapshotter"
    found = {f"crd-{p.name}": p for p in sorted(crds.glob("*.yaml"))}
    found["rbac-snapshot-controller.yaml"] = (
        peers_bin().parent / "snapshot-controller-files" / ("rbac-snapshot-controller.yaml")
    )
    return found


def sidecar_images() -> dict[str, Path]:
    """Image reference -> the peers binary built from the same tag, for each sidecar the node runs."""
    values = yaml.safe_load(VALUES.read_text())["image"]["csi"]
    images: dict[str, Path] = {}
    for key, name in SIDECARS.items():
        reference = str(values[key])
        tag = reference.rsplit(":", 1)[-1]
        images[reference] = peers_bin() / f"{name}-{tag}"
    return images


def prerequisites() -> list[str]:
    """What is missing to build the profile (empty when it can be built)."""
    problems = [
        f"{peers_bin() / name} not built (ci/peers/build.sh {name})"
        for name in (*BINARIES, "pause", "hypertopolvm")
        if not (peers_bin() / name).is_file()
    ]
    problems += [
        f"{binary} not built (ci/peers/build.sh {binary.name.rsplit('-', 1)[0]}; its version must match the "
        f"chart's {reference})"
        for reference, binary in sidecar_images().items()
        if not binary.is_file()
    ]
    problems += [f"{path} not found (ci/peers/build.sh crds snapshot-controller)" for path in manifests().values()
                 if not path.is_file()]  # fmt: skip
    if len(manifests()) < 4:
        problems.append("external-snapshotter's CRDs not found (ci/peers/build.sh crds)")
    if not BUSYBOX.is_file():
        problems.append(f"{BUSYBOX} not found (apt-get install busybox-static)")
    if shutil.which("mkfs.ext4") is None:
        problems.append("mkfs.ext4 not found (apt-get install e2fsprogs)")
    problems += container_image.prerequisites()
    return problems


def _file_digest(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


def inputs() -> dict[str, object]:
    files = {name: peers_bin() / name for name in (*BINARIES, "pause", "hypertopolvm")}
    files.update({reference: binary for reference, binary in sidecar_images().items()})
    files["busybox"] = BUSYBOX
    files.update(manifests())
    return {
        "profile": PROFILE_VERSION,
        "files": {name: _file_digest(path.resolve()) for name, path in sorted(files.items())},
        "topolvm-py": container_image.key(),
        "pause": PAUSE_IMAGE,
        "workload": WORKLOAD_IMAGE,
        "applets": list(BUSYBOX_APPLETS),
    }


def _directory(spec: dict[str, object]) -> Path:
    return cache.cache_root() / f"node-v{PROFILE_VERSION}-{cache.digest(spec)[:16]}"


def cached(spec: dict[str, object] | None = None) -> Profile | None:
    directory = _directory(spec if spec is not None else inputs())
    manifest_path = directory / "profile.json"
    if not manifest_path.exists():
        return None
    return Profile(directory, directory / "node.img", json.loads(manifest_path.read_text()))


def ensure(log: bool = False) -> Profile:
    """The profile disk for the current inputs, built first if need be (serialised by a lock)."""
    problems = prerequisites()
    if problems:
        raise RuntimeError("cannot build the HIL node profile: " + "; ".join(problems))
    container_image.ensure(log=log)  # its key is one of the inputs: build it before hashing
    with cache.exclusive(cache.cache_root() / ".node-profile.lock"):
        spec = inputs()
        existing = cached(spec)
        if existing is not None:
            return existing
        final = _directory(spec)
        _build(spec, final, log)
        for old in cache.cache_root().glob(f"node-v{PROFILE_VERSION}-*"):
            if old != final:
                cache.remove_tree(old)
    built = cached(spec)
    assert built is not None
    return built


def _build(spec: dict[str, object], final: Path, log: bool) -> None:
    started = time.monotonic()
    with cache.staging(final) as work:
        tree = work / "tree"
        (tree / "bin").mkdir(parents=True)
        (tree / "images").mkdir()
        (tree / "manifests").mkdir()
        for name, path in manifests().items():
            shutil.copyfile(path, tree / "manifests" / name)
        for name in BINARIES:
            shutil.copyfile(peers_bin() / name, tree / "bin" / name)
            (tree / "bin" / name).chmod(0o755)
        images: list[dict[str, str]] = []

        def add(archive: str, reference: str, image_id: str) -> None:
            images.append({"archive": f"images/{archive}", "reference": reference, "id": image_id})
            if log:
                print(f"node profile: {reference} -> images/{archive}", file=sys.stderr, flush=True)

        add(
            "pause.tar",
            PAUSE_IMAGE,
            image_archive.write(
                tree / "images" / "pause.tar", PAUSE_IMAGE, {"pause": peers_bin() / "pause"}, entrypoint=["/pause"]
            ),
        )
        add(
            "busybox.tar",
            WORKLOAD_IMAGE,
            image_archive.write(
                tree / "images" / "busybox.tar",
                WORKLOAD_IMAGE,
                {"bin/busybox": BUSYBOX},
                symlinks={f"bin/{applet}": "busybox" for applet in BUSYBOX_APPLETS},
                entrypoint=["/bin/sh"],
            ),
        )
        add(
            "hypertopolvm.tar",
            UPSTREAM_IMAGE,
            image_archive.write(
                tree / "images" / "hypertopolvm.tar",
                UPSTREAM_IMAGE,
                {"hypertopolvm": peers_bin() / "hypertopolvm", "bin/busybox": BUSYBOX},
                symlinks={"usr/bin/nsenter": "../../bin/busybox"},  # upstream lvmd's lvm-command-prefix
                entrypoint=["/hypertopolvm"],
            ),
        )
        for reference, binary in sidecar_images().items():
            name = binary.name.rsplit("-", 1)[0]
            add(
                f"{name}.tar",
                reference,
                image_archive.write(
                    tree / "images" / f"{name}.tar", reference, {name: binary}, entrypoint=[f"/{name}"]
                ),
            )
        container_image.save(tree / "images" / "topolvm-py.tar")
        images.append(
            {
                "archive": "images/topolvm-py.tar",
                "reference": f"docker.io/library/{container_image.reference()}",
                "id": str(spec["topolvm-py"]),
            }
        )
        manifest: dict[str, object] = {
            "inputs": spec,
            "binaries": [f"bin/{name}" for name in BINARIES],
            "manifests": [f"manifests/{name}" for name in manifests()],
            "images": images,
            "pause_image": PAUSE_IMAGE,
            "workload_image": WORKLOAD_IMAGE,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (tree / "profile.json").write_text(json.dumps(manifest, indent=2) + "\n")
        size = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())
        size = (int(size * 1.1) // (1 << 20) + 64) << 20
        with (work / "node.img").open("wb") as handle:
            handle.truncate(size)
        subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-L", SERIAL, "-d", str(tree), str(work / "node.img")],
            check=True,
            capture_output=True,
        )
        cache.remove_tree(tree)
        manifest["disk_bytes"] = size
        manifest["build_seconds"] = round(time.monotonic() - started, 1)
        (work / "profile.json").write_text(json.dumps(manifest, indent=2) + "\n")


NODE_VALUES = cache.REPO_ROOT / "tests" / "hil" / "node" / "values.yaml"
CHART = cache.REPO_ROOT / "deploy" / "helm" / "topolvm"


def render_chart(destination: Path, helm: Path | None = None, set_values: tuple[str, ...] = ()) -> None:
    """The chart rendered for the node (tests/hil/node/values.yaml, CRDs included, then helm's ``--set`` of each
    of ``set_values``) into ``destination``, which the node suite and its benchmark ship to the guest as
    $TOPOLVM_HIL_FILES/topolvm.yaml."""
    argv = [str(helm or peers_bin() / "helm"), "template", "topolvm", str(CHART), "--namespace", "topolvm-system"]
    argv += ["--include-crds", "--values", str(NODE_VALUES)]
    for value in set_values:
        argv += ["--set", value]
    rendered = subprocess.run(argv, capture_output=True, text=True, check=False)
    if rendered.returncode != 0:
        raise RuntimeError(f"helm template for the node failed: {rendered.stderr}")
    destination.write_text(rendered.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.node_profile", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["build", "path"])
    args = parser.parse_args(argv)
    if args.command == "path":
        found = cached()
        print(found.disk if found else "not built", file=sys.stdout if found else sys.stderr)
        return 0 if found else 1
    profile = ensure(log=True)
    print(json.dumps({"disk": str(profile.disk), **{k: profile.manifest[k] for k in ("build_seconds", "disk_bytes")}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
