#!/usr/bin/env bash
# The volume group deploy/lvmd/lvmd.yaml names (myvg1, with the thin pool "thinpool" of device class ssd-thin) on
# a sparse file behind a loop device, on this host (root, lvm2 with dm-thin-pool). Used by ci/kind/run.sh and
# tests/integration/test_k3s.py, whose cluster nodes see the host's /dev.
#   ci/kind/loop-vg.sh create DIR    # DIR/myvg1.img (8 GiB sparse), prints the loop device
#   ci/kind/loop-vg.sh delete DIR    # removes the VG, detaches the loop device, deletes the file
set -euo pipefail
action=${1:?create|delete}
dir=${2:?directory for the backing file}
vg=myvg1
file="$dir/$vg.img"
case "$action" in
create)
    trap '"$0" delete "$dir"' ERR   # a half-made volume group is not left behind
    mkdir -p "$dir"
    truncate -s 8G "$file"
    loop=$(losetup -f --show "$file")
    pvcreate -q "$loop"
    vgcreate -q "$vg" "$loop"
    lvcreate -q -T -L 4G "$vg/thinpool"
    echo "$loop"
    ;;
delete)
    vgchange -q -an "$vg" 2>/dev/null || true
    vgremove -q -f "$vg" 2>/dev/null || true
    for loop in $(losetup -j "$file" -O NAME -n 2>/dev/null); do
        losetup -d "$loop"
    done
    rm -f "$file"
    ;;
*)
    echo "usage: $0 create|delete DIR" >&2
    exit 2
    ;;
esac
