#!/usr/bin/env bash
# Debian packages the project's tests and demo need: lvm2 for lvmd on loop devices; qemu, debootstrap and
# filesystem tools for the hardware-in-the-loop VM (harness/). Idempotent; installs only what is missing.
set -euo pipefail
pkgs=(lvm2 thin-provisioning-tools util-linux e2fsprogs xfsprogs btrfs-progs
      qemu-system-x86 qemu-utils debootstrap ca-certificates)
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
