"""Build and cache the HIL VM image: kernel, initrd and an ext4 root filesystem image.

Called by ``harness.runner`` (``ensure()`` before each boot) and from the command line::

    python -m harness.image build      # build if missing, print the image directory
    python -m harness.image path       # print the directory if cached, exit 1 otherwise
    python -m harness.image key        # print the input hash
    python -m harness.image prune      # delete cached images with other keys

The image lives in ``<cache>/vm-v1-<hash>/`` where the hash covers every input (Debian suite, package list,
Python requirements with the host's versions, the init script, this builder's version). It is built in a
temporary directory and renamed into place, so a half-built image is never used. A cold build needs root,
``debootstrap``, ``mkfs.ext4`` and network access to a Debian mirror and PyPI, nothing else.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from harness import cache

BUILDER_VERSION = 1
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
PACKAGES = (
    "linux-image-cloud-amd64",
    "lvm2",
    "thin-provisioning-tools",
    "xfsprogs",
    "e2fsprogs",
    "btrfs-progs",
    "util-linux",
    "kmod",
    "udev",
    "nvme-cli",
    "python3",
    # The HIL node (harness/node_profile.py): a real kubelet's container runtime, pod networking and the
    # service-address rule that stands in for kube-proxy.
    "containerd",
    "runc",
    "containernetworking-plugins",
    "iptables",
    "iproute2",
    "openssl",  # the node's control plane makes its service-account signing key with it
)
# Test-only requirements installed next to the project's runtime dependencies.
EXTRA_REQUIREMENTS = ("pytest", "hypothesis", "simpy")
PYTHON_TAG = "3.11"  # bookworm's python3
SITE_DIR = "opt/topolvm-py/site"  # inside the rootfs; the agent puts it on PYTHONPATH
INIT_SCRIPT = Path(__file__).with_name("guest-init.sh")
# Space left free in the root image for tests that write to the root filesystem (the overlay grows on use).
FREE_BYTES = 512 * 1024 * 1024
# Bookworm has glibc 2.36: any manylinux wheel up to that works inside the guest.
_PLATFORMS = ("manylinux2014_x86_64", *(f"manylinux_2_{minor}_x86_64" for minor in range(17, 37)))
_REQ_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclasses.dataclass(frozen=True)
class Image:
    """A built image: paths of its parts, ready to boot."""

    directory: Path
    kernel: Path
    initrd: Path
    root: Path
    manifest: dict[str, object]


def requirements(pyproject: Path = cache.REPO_ROOT / "pyproject.toml") -> list[str]:
    """The project's runtime dependencies plus test tools, pinned to the host's versions where installed.

    Pinning to the host keeps generated protobuf code and the runtime in step between host and guest.
    """
    declared: list[str] = []
    if pyproject.exists():
        declared = list(tomllib.loads(pyproject.read_text())["project"].get("dependencies", []))
    pinned: list[str] = []
    for spec in [*declared, *EXTRA_REQUIREMENTS]:
        match = _REQ_NAME.match(spec)
        if match is None:
            raise ValueError(f"unparsable requirement {spec!r} in {pyproject}")
        name = match.group(0)
        try:
            pinned.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pinned.append(spec)
    return sorted(set(pinned), key=str.lower)


def inputs() -> dict[str, object]:
    """Everything the image's content depends on; its hash names the cache entry."""
    return {
        "builder": BUILDER_VERSION,
        "suite": SUITE,
        "packages": sorted(PACKAGES),
        "requirements": requirements(),
        "python": PYTHON_TAG,
        "init": INIT_SCRIPT.read_text(),
    }


def image_dir() -> Path:
    return cache.cache_root() / f"vm-v{BUILDER_VERSION}-{cache.digest(inputs())[:16]}"


def cached() -> Image | None:
    """The image for the current inputs if it is complete, else None."""
    directory = image_dir()
    manifest_path = directory / "manifest.json"
    if not manifest_path.exists():
        return None
    manifest = json.loads(manifest_path.read_text())
    return Image(directory, directory / "vmlinuz", directory / "initrd.img", directory / "root.img", manifest)


def build_prerequisites() -> list[str]:
    """Reasons a cold build cannot run on this machine (empty when it can)."""
    problems = [
        f"{tool} not found (apt-get install {pkg})"
        for tool, pkg in (("debootstrap", "debootstrap"), ("mkfs.ext4", "e2fsprogs"))
        if shutil.which(tool) is None
    ]
    if os.geteuid() != 0:
        problems.append("building the image needs root (debootstrap chroots)")
    return problems


def ensure(log: bool = True) -> Image:
    """Return the cached image, building it first if needed (serialised by a lock across processes)."""
    existing = cached()
    if existing is not None:
        return existing
    with cache.exclusive(cache.cache_root() / ".image-build.lock"):
        existing = cached()  # another process may have finished it while we waited
        if existing is not None:
            return existing
        build(log=log)
    built = cached()
    assert built is not None
    return built


def build(log: bool = True) -> None:
    """Build the image for the current inputs from scratch and publish it atomically."""
    problems = build_prerequisites()
    if problems:
        raise RuntimeError("cannot build the HIL image: " + "; ".join(problems))
    spec = inputs()
    final = image_dir()
    timings: dict[str, float] = {}
    with cache.staging(final) as work:
        rootfs = work / "rootfs"
        started = time.monotonic()
        debootstrap(rootfs, PACKAGES, log)
        timings["debootstrap_s"] = time.monotonic() - started
        started = time.monotonic()
        pip_install(rootfs / SITE_DIR, [str(r) for r in spec["requirements"]], log)  # type: ignore[attr-defined]
        timings["pip_s"] = time.monotonic() - started
        _configure(rootfs)
        _copy_boot_files(rootfs, work)
        _shrink(rootfs)
        started = time.monotonic()
        root_bytes = _make_ext4(rootfs, work / "root.img")
        timings["mkfs_s"] = time.monotonic() - started
        cache.remove_tree(rootfs)
        manifest = {
            "inputs": spec,
            "key": final.name,
            "timings": {k: round(v, 1) for k, v in timings.items()},
            "root_image_bytes": root_bytes,
            "root_image_allocated_bytes": (work / "root.img").stat().st_blocks * 512,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def run(argv: list[str], log: bool, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
    """Run a build step; its output streams when ``log``, else its tail is in the error."""
    if log:
        print("+", " ".join(argv), file=sys.stderr, flush=True)
    result = subprocess.run(
        argv,
        env=env,
        cwd=cwd,
        stdout=None if log else subprocess.PIPE,
        stderr=subprocess.STDOUT,
        check=False,
        text=True,
    )
    if result.returncode != 0:
        tail = "" if log else "\n" + (result.stdout or "")[-4000:]
        raise RuntimeError(f"command failed with exit code {result.returncode}: {argv[0]} ...{tail}")


def debootstrap(rootfs: Path, packages: tuple[str, ...], log: bool) -> None:
    """A minbase Debian of ``SUITE`` with ``packages`` (also used by harness.container_image)."""
    debs = cache.cache_root() / "debs"  # .deb cache: a rebuild after an input change downloads nothing
    debs.mkdir(parents=True, exist_ok=True)
    mirror = os.environ.get("TOPOLVM_DEBIAN_MIRROR", DEFAULT_MIRROR)
    run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--cache-dir={debs}",
            f"--include={','.join(packages)}",
            SUITE,
            str(rootfs),
            mirror,
        ],
        log,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )


def pip_install(target: Path, reqs: list[str], log: bool) -> None:
    """Install wheels for the guest's (or the container image's) CPython into ``target`` with the host's pip (no
    chroot, no pip in the guest)."""
    argv = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-compile",
        "--target",
        str(target),
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        PYTHON_TAG,
        "--abi",
        "cp" + PYTHON_TAG.replace(".", ""),
    ]
    for platform in _PLATFORMS:
        argv += ["--platform", platform]
    run([*argv, *reqs], log)


def _configure(rootfs: Path) -> None:
    init = rootfs / "sbin" / "hil-init"
    shutil.copyfile(INIT_SCRIPT, init)
    init.chmod(0o755)
    (rootfs / "etc" / "hostname").write_text("hil\n")
    (rootfs / "etc" / "hosts").write_text("127.0.0.1 localhost hil\n")
    (rootfs / "etc" / "fstab").write_text("# root is mounted by the kernel; hil-init mounts the rest\n")
    (rootfs / "job").mkdir(exist_ok=True)


def _copy_boot_files(rootfs: Path, work: Path) -> None:
    kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
    initrds = sorted((rootfs / "boot").glob("initrd.img-*"))
    if not kernels or not initrds:
        raise RuntimeError(f"no kernel or initrd in {rootfs / 'boot'}")
    shutil.copyfile(kernels[-1], work / "vmlinuz")
    shutil.copyfile(initrds[-1], work / "initrd.img")


def _shrink(rootfs: Path) -> None:
    for relative in (
        "usr/share/doc",
        "usr/share/man",
        "usr/share/info",
        "var/cache/apt/archives",
        "var/lib/apt/lists",
        "var/cache/debconf",
    ):
        directory = rootfs / relative
        if directory.is_dir():
            for child in directory.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                elif child.name != "lock":
                    child.unlink()
    for initrd in (rootfs / "boot").glob("initrd.img-*"):
        initrd.unlink()  # booted from the copy next to the image, not from inside it


def _tree_bytes(root: Path) -> int:
    total = 0
    for directory, _, files in os.walk(root):
        for name in files:
            path = Path(directory, name)
            if not path.is_symlink():
                total += path.stat().st_size
    return total


def _make_ext4(rootfs: Path, image: Path) -> int:
    size = int(_tree_bytes(rootfs) * 1.2) + FREE_BYTES
    size = (size // (1024 * 1024) + 1) * 1024 * 1024
    with image.open("wb") as handle:
        handle.truncate(size)
    run(["mkfs.ext4", "-q", "-F", "-L", "hil-root", "-d", str(rootfs), str(image)], log=False)
    return size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.image", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["build", "path", "key", "prune"])
    parser.add_argument("--quiet", action="store_true", help="do not stream build output")
    args = parser.parse_args(argv)
    if args.command == "key":
        print(image_dir().name)
        return 0
    if args.command == "path":
        found = cached()
        print(found.directory if found else "not built", file=sys.stdout if found else sys.stderr)
        return 0 if found else 1
    if args.command == "prune":
        keep = image_dir().name
        for old in cache.cache_root().glob("vm-v*"):
            if old.name != keep:
                print("removing", old)
                cache.remove_tree(old)
        return 0
    started = time.monotonic()
    built = ensure(log=not args.quiet)
    print(
        json.dumps(
            {
                "directory": str(built.directory),
                "seconds": round(time.monotonic() - started, 1),
                **{k: built.manifest[k] for k in ("timings", "root_image_bytes", "root_image_allocated_bytes")},
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
