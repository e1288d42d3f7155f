"""The container image deploy/ runs, topolvm-py:<version> (harness/container_image.py): built (or kept from its
last build while its inputs are unchanged), mounted with `podman image mount`, and its programs run inside it by
chroot, as the user each manifest runs them as. Running a container is refused on this machine (setrlimit in
the OCI runtime), so the image's root filesystem is all that is run; the Kubernetes side is the chart's tests'."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import cache, container_image
from tests.support import helm_chart, prerequisites
from tests.support.deployment import DEPLOY

pytestmark = [pytest.mark.root, pytest.mark.slow]

# Renderings that between them run every program of the image: the defaults, lvmd as a DaemonSet, lvmd
# embedded in topolvm-node.
RENDERINGS: list[dict[str, Any]] = [{}, {"lvmd": {"managed": True}}, {"node": {"lvmdEmbedded": True}}]


@pytest.fixture(scope="module")
def rootfs() -> Iterator[Path]:
    problems = container_image.prerequisites()
    if problems:
        reason = "cannot build the container image: " + "; ".join(problems)
        prerequisites.missing(reason)
    container_image.ensure()
    mounted = container_image.mount()
    try:
        yield mounted
    finally:
        container_image.unmount()


def in_image(rootfs: Path, user: int, *argv: str, bind: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``argv`` inside the image as ``user``, in a private mount namespace where ``bind`` (if any) is the image's
    /tmp: the image itself is never written to (no byte-code either)."""
    chroot = shlex.join(["chroot", f"--userspec={user}:{user}", str(rootfs), *argv])
    script = f"mount --bind {shlex.quote(str(bind))} {shlex.quote(str(rootfs / 'tmp'))} && {chroot}" if bind else chroot
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/local/bin:/usr/sbin:/usr/bin", "PYTHONDONTWRITEBYTECODE": "1", "HOME": "/"},
    )


def image_user(rootfs: Path) -> int:
    inspect = container_image.podman("image", "inspect", "--format", "{{.Config.User}}", container_image.reference())
    return int(inspect.stdout.strip().split(":")[0])


def our_containers(helm: Path) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(workload, pod spec, container) of every container running the image, over ``RENDERINGS``."""
    found = []
    for values in RENDERINGS:
        for doc in helm_chart.render(helm, values).docs:
            if doc["kind"] not in ("Deployment", "DaemonSet"):
                continue
            pod = doc["spec"]["template"]["spec"]
            for container in pod["containers"]:
                if container["image"].startswith(container_image.NAME + ":"):
                    found.append((doc["metadata"]["name"], pod, container))
    return found


def test_the_image_holds_every_component_and_nothing_else(rootfs: Path) -> None:
    scripts = tomllib.loads((cache.REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    components = sorted(name for name, target in scripts.items() if target.startswith("topolvm."))
    assert sorted(p.name for p in (rootfs / container_image.BIN).iterdir()) == components
    labels = container_image.podman("image", "inspect", "--format", "{{json .Labels}}", container_image.reference())
    assert f'"{container_image.COMMANDS_LABEL}":"{",".join(components)}"' in labels.stdout
    site = rootfs / container_image.SITE
    assert (site / "topolvm" / "cmd" / "controller.py").is_file()
    assert not (site / "simulator").exists() and not (site / "harness").exists()
    assert not (site / "kubernetes" / "aio").exists()
    assert not any((rootfs / "usr" / "share" / "doc").iterdir())
    assert image_user(rootfs) == container_image.USER[0]
    assert f"{container_image.USER[1]}:x:{container_image.USER[0]}:" in (rootfs / "etc" / "passwd").read_text()


def test_every_topolvm_module_imports_in_the_image(rootfs: Path) -> None:
    """Nothing the build pruned is needed: every module of the package imports (the CLIs import lazily)."""
    probe = (
        "import importlib, pkgutil, topolvm\n"
        "names = [m.name for m in pkgutil.walk_packages(topolvm.__path__, 'topolvm.')]\n"
        "for name in names: importlib.import_module(name)\n"
        "print(len(names), 'modules')\n"
    )
    done = in_image(rootfs, container_image.USER[0], "/usr/bin/python3", "-c", probe)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[0]) > 50


def test_every_program_and_library_resolves(rootfs: Path) -> None:
    """Every executable and shared object in the image finds its libraries (the build removed some)."""
    loader = "/lib64/ld-linux-x86-64.so.2"
    checked, missing = 0, []
    for directory in ("usr/bin", "usr/sbin", container_image.SITE):
        for path in (rootfs / directory).rglob("*"):
            if path.is_symlink() or not path.is_file() or path.read_bytes()[:4] != b"\x7fELF":
                continue
            inside = "/" + str(path.relative_to(rootfs))
            done = in_image(rootfs, 0, loader, "--list", inside)
            checked += 1
            missing += [f"{inside}: {line.strip()}" for line in done.stdout.splitlines() if "not found" in line]
    assert checked > 100
    assert missing == []


def test_the_filesystem_and_lvm_tools_run(rootfs: Path) -> None:
    """The tools topolvm runs (topolvm/mount/system.py, the lvm command prefix, dd for thick copies in
    topolvm/lvm/cli.py) and the thin tools lvm2 runs."""
    for argv, expected in (
        (["lvm", "version"], "LVM version"),
        (["thin_check", "-V"], "."),
        (["mkfs.xfs", "-V"], "mkfs.xfs version"),
        (["xfs_growfs", "-V"], "xfs_growfs version"),
        (["mkfs.ext4", "-V"], "mke2fs"),
        (["resize2fs", "-h"], "resize2fs"),
        (["mkfs.btrfs", "--version"], "mkfs.btrfs"),
        (["btrfs", "--version"], "btrfs-progs"),
        (["blkid", "-V"], "blkid from util-linux"),
        (["mount", "-V"], "mount from util-linux"),
        (["umount", "-V"], "umount from util-linux"),
        (["nsenter", "-V"], "nsenter from util-linux"),
        (["dd", "--version"], "dd (coreutils)"),
    ):
        done = in_image(rootfs, 0, *argv)
        assert expected in done.stdout + done.stderr, (argv, done.returncode, done.stdout, done.stderr)


def test_manifests_run_the_image_commands_as_their_users(rootfs: Path, helm: Path) -> None:
    """Every container of deploy/ that runs the image names a program of it, with flags that program accepts
    (from its own --help inside the image, as the user the manifest gives it), at the project's version."""
    reference = container_image.reference()
    default_user = image_user(rootfs)
    seen = set()
    for workload, pod, container in our_containers(helm):
        assert container["image"] == reference
        program, *args = container["command"]
        user = container.get("securityContext", {}).get("runAsUser", pod.get("securityContext", {}).get("runAsUser"))
        user = default_user if user is None else user
        done = in_image(rootfs, user, program, "--help")
        assert done.returncode == 0, (workload, program, done.stderr)
        assert done.stdout.startswith(f"usage: {program}"), done.stdout
        for flag in {arg.split("=")[0] for arg in args if arg.startswith("--")}:
            assert re.search(rf"{re.escape(flag)}\b", done.stdout), (workload, program, flag)
        seen.add((program, user))
    assert seen == {
        ("topolvm-controller", 65532),
        ("topolvm-scheduler", 65532),
        ("topolvm-webhook", 65532),
        ("topolvm-node", 0),
        ("topolvm-lvmd", 0),
    }
    # The plain manifests are the default rendering (test_helm_chart.py); the image they name is this one.
    for path in (DEPLOY / "manifests").glob("*.yaml"):
        assert set(re.findall(r"image: (topolvm-py:\S+)", path.read_text())) <= {reference}


def test_lvmd_checks_a_config_inside_the_image(rootfs: Path, tmp_path: Path) -> None:
    shutil.copyfile(DEPLOY / "lvmd" / "lvmd.yaml", tmp_path / "lvmd.yaml")
    (tmp_path / "broken.yaml").write_text("device-classes:\n  - name: ssd\n    default: true\n")
    os.chmod(tmp_path, 0o755)
    done = in_image(rootfs, 0, "topolvm-lvmd", "--config", "/tmp/lvmd.yaml", "--check-config", bind=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "/tmp/lvmd.yaml: OK (2 device classes)"
    broken = in_image(rootfs, 0, "topolvm-lvmd", "--config", "/tmp/broken.yaml", "--check-config", bind=tmp_path)
    assert broken.returncode != 0
    assert "volume-group" in broken.stderr + broken.stdout
