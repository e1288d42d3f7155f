"""Build the container image ``topolvm-py:<version>`` that deploy/ runs, from a Debian rootfs, with no registry.

Called by ``make image``, by tests/integration/test_container_image.py and from the command line::

    python -m harness.container_image build [--save FILE]   # build or take from the cache; podman holds it
    python -m harness.container_image key                   # print the input hash

The rootfs is a ``debootstrap --variant=minbase`` Debian (the HIL image's suite, sharing its .deb cache) with
Python, lvm2, the thin tools, the filesystem tools and util-linux; the project's wheel and its runtime
dependencies (pinned to the versions of the environment that builds it, as the HIL image does) go into
/usr/local/lib/python3.11/dist-packages, and a script per ``topolvm.*`` console entry point into /usr/local/bin.
Documentation, locales, apt's lists, the package managers' caches and what nothing here runs (below, _PRUNE)
are removed. The rootfs is ``podman import``-ed as one layer (``FROM scratch`` in effect) into podman's own
storage under the cache (``<cache>/containers``, ``--storage-driver vfs``), labelled with the hash of every
input (including the project's sources): while that label matches, the image is not built again. What the
build measured is kept in ``<cache>/ctr-v<BUILDER_VERSION>-<hash>.json``. Podman stores, mounts and saves the
image; it never runs it.
The image's user is ``topolvm`` (65532); deploy/ runs topolvm-node and lvmd as root (they mount, open block
devices and run lvm on the host), and the controller, scheduler and webhook as that user.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
from pathlib import Path

from harness import cache, image

BUILDER_VERSION = 2
NAME = "topolvm-py"
PACKAGES = (
    "python3",
    "lvm2",
    "thin-provisioning-tools",
    "xfsprogs",
    "e2fsprogs",
    "btrfs-progs",
    "util-linux",
    "mount",
)
SITE = "usr/local/lib/python3.11/dist-packages"  # on Debian's python3 sys.path
BIN = "usr/local/bin"
USER = (65532, "topolvm")
INPUTS_LABEL = "io.topolvm-py.inputs"
COMMANDS_LABEL = "io.topolvm-py.commands"
# What the wheel is built from (a copy: the worktree gets no build/ or egg-info); the simulator and the HIL
# harness, packaged in the same wheel, are left out of the image, and the README (the wheel's long description)
# is replaced by a line, so editing it does not rebuild the image.
SOURCES = ("pyproject.toml", "topolvm")
README_STUB = "topolvm-py: TopoLVM in Python. See the project's README.md.\n"
# Removed from the rootfs after installation: nothing in the image reads them.
_STRIP = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "usr/share/bash-completion",
    "usr/share/common-licenses",
    "var/cache/apt",
    "var/cache/debconf",
    "var/cache/ldconfig",
    "var/lib/apt/lists",
    "var/log",
    "dev",
    "proc",
    "sys",
    "run",
    "tmp",
)
# Installed as dependencies, never used by the image's programs: xfs_scrub (an online checker; libicu, 36 MB, is
# only its dependency) and the kubernetes client's asyncio flavour (68 MB with byte-code; topolvm uses the
# synchronous client). tests/integration/test_container_image.py checks every program's libraries resolve and
# every topolvm module imports.
_PRUNE = (
    "usr/sbin/xfs_scrub*",
    "usr/lib/x86_64-linux-gnu/libicu*",
    "usr/lib/systemd/system/xfs_scrub*",
    f"{SITE}/kubernetes/aio",
)
_STORAGE = ("--storage-driver", "vfs")


def version(pyproject: Path = cache.REPO_ROOT / "pyproject.toml") -> str:
    return str(tomllib.loads(pyproject.read_text())["project"]["version"])


def reference() -> str:
    """The image name deploy/ references: ``topolvm-py:<the project's version>``."""
    return f"{NAME}:{version()}"


def constraints() -> list[str]:
    """Every distribution of the building environment but the project itself, pinned: the image gets the
    versions the test suite ran with (pip installs only those the wheel needs)."""
    pins = {
        dist.metadata["Name"].lower(): dist.version
        for dist in importlib.metadata.distributions()
        if dist.metadata["Name"] and dist.metadata["Name"].lower() != NAME
    }
    return [f"{name}=={pins[name]}" for name in sorted(pins)]


def sources_digest(root: Path = cache.REPO_ROOT) -> str:
    """A hash of what goes into the wheel (no caches)."""
    hasher = hashlib.sha256()
    for name in SOURCES:
        for path in sorted([root / name, *(root / name).rglob("*")]):
            if path.is_file() and "__pycache__" not in path.parts:
                hasher.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return hasher.hexdigest()


def inputs() -> dict[str, object]:
    return {
        "builder": BUILDER_VERSION,
        "suite": image.SUITE,
        "packages": sorted(PACKAGES),
        "python": image.PYTHON_TAG,
        "constraints": constraints(),
        "sources": sources_digest(),
        "user": list(USER),
    }


def key() -> str:
    return f"ctr-v{BUILDER_VERSION}-{cache.digest(inputs())[:16]}"


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """podman on the project's own storage (under the cache, vfs: no kernel overlay needed)."""
    storage = cache.cache_root() / "containers"
    argv = ["podman", "--root", str(storage / "storage"), "--runroot", str(storage / "run"), *_STORAGE, *args]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return result


def prerequisites() -> list[str]:
    """Reasons the image cannot be built or mounted here (empty when it can)."""
    problems = [f"{tool} not found (scripts/install-system-deps.sh)" for tool in ("podman",) if not shutil.which(tool)]
    problems += image.build_prerequisites()
    return problems


def ensure(log: bool = False) -> dict[str, object]:
    """The image for the current inputs, in podman's storage: kept there while its inputs label matches, else
    built and imported. Returns what the build recorded (size, timings, commands) in ``<cache>/<key>.json``."""
    problems = prerequisites()
    if problems:
        raise RuntimeError("cannot build the container image: " + "; ".join(problems))
    record = cache.cache_root() / f"{key()}.json"
    with cache.exclusive(cache.cache_root() / ".ctr-build.lock"):
        label = "{{index .Labels " + json.dumps(INPUTS_LABEL) + "}}"
        current = podman("image", "inspect", "--format", label, reference(), check=False)
        if not (record.exists() and current.returncode == 0 and current.stdout.strip() == record.stem):
            _build(record, log)
            for old in cache.cache_root().glob("ctr-v*-*.json"):
                if old != record:
                    old.unlink()
    built: dict[str, object] = json.loads(record.read_text())
    return built


def _build(record: Path, log: bool) -> None:
    spec = inputs()
    timings: dict[str, float] = {}
    work = cache.cache_root() / f".{record.stem}-build-{os.getpid()}"
    cache.remove_tree(work)
    work.mkdir()
    try:
        rootfs = work / "rootfs"
        started = time.monotonic()
        image.debootstrap(rootfs, PACKAGES, log)
        timings["debootstrap_s"] = time.monotonic() - started
        started = time.monotonic()
        commands = _install_project(rootfs, work, log)
        _add_user(rootfs)
        _strip(rootfs)
        # Byte-compiled by the image's own interpreter, once: the non-root components could not write the
        # caches, and each process would compile its imports again (2.1 s against 4.6 s to import them).
        image.run(["chroot", str(rootfs), "/usr/bin/python3", "-m", "compileall", "-q", "/" + SITE], log)
        timings["pip_s"] = time.monotonic() - started
        started = time.monotonic()
        with tarfile.open(work / "rootfs.tar", "w") as tar:
            tar.add(rootfs, arcname=".")
        cache.remove_tree(rootfs)
        _import(work / "rootfs.tar", record.stem, commands)
        timings["import_s"] = time.monotonic() - started
        built = {
            "inputs": spec,
            "key": record.stem,
            "reference": reference(),
            "commands": commands,
            "image_bytes": size_bytes(),
            "timings": {name: round(seconds, 1) for name, seconds in timings.items()},
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        record.write_text(json.dumps(built, indent=2) + "\n")
    finally:
        cache.remove_tree(work)


def _install_project(rootfs: Path, work: Path, log: bool) -> list[str]:
    """The wheel and its runtime dependencies into the image's site directory; a script per ``topolvm.*``
    console entry point."""
    source, wheels = work / "source", work / "wheel"
    for name in SOURCES:
        origin = cache.REPO_ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copyfile(origin, source / name)
    (source / "README.md").write_text(README_STUB)
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels)]
    image.run([*pip, str(source)], log)
    (wheel,) = wheels.glob("*.whl")
    pins = work / "constraints.txt"
    pins.write_text("\n".join(constraints()) + "\n")
    site = rootfs / SITE
    image.pip_install(site, [str(wheel), "-c", str(pins)], log)
    shutil.rmtree(site / "bin", ignore_errors=True)  # pip's scripts, whose interpreter is the building one
    (dist,) = importlib.metadata.distributions(path=[str(site)], name=NAME)
    commands = []
    for entry_point in dist.entry_points.select(group="console_scripts"):
        if not entry_point.module.startswith("topolvm."):
            continue
        script = rootfs / BIN / entry_point.name
        script.write_text(
            "#!/usr/bin/python3\n"
            f"import sys\nfrom {entry_point.module} import {entry_point.attr}\n"
            f"sys.exit({entry_point.attr}())\n"
        )
        script.chmod(0o755)
        commands.append(entry_point.name)
    return sorted(commands)


def _add_user(rootfs: Path) -> None:
    uid, name = USER
    with (rootfs / "etc" / "passwd").open("a") as passwd:
        passwd.write(f"{name}:x:{uid}:{uid}::/nonexistent:/usr/sbin/nologin\n")
    with (rootfs / "etc" / "group").open("a") as group:
        group.write(f"{name}:x:{uid}:\n")


def _strip(rootfs: Path) -> None:
    for relative in _STRIP:
        directory = rootfs / relative
        if directory.is_dir() and not directory.is_symlink():
            shutil.rmtree(directory)
            directory.mkdir()
    for relative in _PRUNE:
        for path in rootfs.glob(relative):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    (rootfs / "tmp").chmod(0o1777)


def _import(rootfs_tar: Path, inputs_key: str, commands: list[str]) -> None:
    changes = [
        f"USER {USER[0]}:{USER[0]}",
        "WORKDIR /",
        "ENV PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        f'LABEL {INPUTS_LABEL}="{inputs_key}"',
        f'LABEL {COMMANDS_LABEL}="{",".join(commands)}"',
        f'LABEL org.opencontainers.image.version="{version()}"',
    ]
    unmount()
    podman("rmi", "--force", reference(), check=False)
    argv = ["import"]
    for change in changes:
        argv += ["--change", change]
    podman(*argv, str(rootfs_tar), reference())
    podman("image", "prune", "--force", check=False)


def mount() -> Path:
    """``podman image mount``: the image's root filesystem, read it only."""
    return Path(podman("image", "mount", reference()).stdout.strip())


def unmount() -> None:
    podman("image", "unmount", reference(), check=False)


def size_bytes() -> int:
    return int(podman("image", "inspect", "--format", "{{.Size}}", reference()).stdout.strip())


def save(path: Path) -> None:
    """A docker-archive of the image (``docker load``, ``kind load image-archive``, ``ctr image import``), named
    as Docker and containerd spell the manifests' ``topolvm-py:<version>`` (podman's own name for it is
    ``localhost/topolvm-py:<version>``)."""
    path.unlink(missing_ok=True)
    qualified = f"docker.io/library/{reference()}"
    podman("tag", reference(), qualified)
    try:
        podman("save", "--format", "docker-archive", "-o", str(path), qualified)
    finally:
        podman("untag", reference(), qualified, check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.container_image", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["build", "key"])
    parser.add_argument("--save", type=Path, help="with build: also write a docker-archive of the image here")
    parser.add_argument("--quiet", action="store_true", help="do not stream build output")
    args = parser.parse_args(argv)
    if args.command == "key":
        print(key())
        return 0
    started = time.monotonic()
    manifest = ensure(log=not args.quiet)
    if args.save:
        save(args.save)
    shown = {k: manifest[k] for k in ("reference", "key", "commands", "image_bytes", "timings")}
    print(json.dumps({**shown, "seconds": round(time.monotonic() - started, 1)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
