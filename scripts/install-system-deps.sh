#!/usr/bin/env bash
# Debian packages the project's tests and demo need. Idempotent; installs only what is missing.
#   lvm2 thin-provisioning-tools      lvmd and the contract suites on loop devices
#   util-linux e2fsprogs xfsprogs btrfs-progs   losetup, mkfs/mount/resize for the Mounter contract suite
#   qemu-system-x86 qemu-utils        the hardware-in-the-loop VM (software emulation) and its qcow2 overlays
#   debootstrap debian-archive-keyring  building the VM's Debian rootfs (cold image build only)
#   git                               listing the source files shipped into the VM
#   openssl                           keys for the local kube-apiserver the Cluster contract suite starts
#   chromium                          renders the simulator's HTML reports headless (tests/sim/test_report_chromium.py,
#                                     test_report_fidelity.py)
#   podman                            imports and mounts the container image (harness/container_image.py; used as
#                                     root with --storage-driver vfs, never to run a container)
#   busybox-static                    the HIL node's workload image (harness/node_profile.py)
# Go (>= 1.26, preinstalled on this machine kind; Debian's golang-go is too old) builds the upstream peers.
#
# With --python only what `make run` needs: a Python able to make a virtualenv (python3-venv), and only when
# the interpreter cannot do it already (e.g. a pyenv or distribution Python that can).
set -euo pipefail
if [ "${1:-}" = "--python" ]; then
  if "${PY:-python3}" -c 'import venv, ensurepip' 2>/dev/null; then
    exit 0
  fi
  pkgs=(python3 python3-venv)
else
  pkgs=(lvm2 thin-provisioning-tools util-linux e2fsprogs xfsprogs btrfs-progs
        qemu-system-x86 qemu-utils debootstrap debian-archive-keyring git openssl ca-certificates
        chromium podman busybox-static)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "missing Debian packages: ${missing[*]} (run as root: apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "installing: ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
