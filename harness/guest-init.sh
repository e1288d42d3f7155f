#!/bin/sh
# PID 1 of the HIL VM, installed as /sbin/hil-init by harness.image (kernel cmdline init=/sbin/hil-init).
# It mounts the basics, unpacks the job disk (the virtio disk with serial "hil-job": a tar written by
# harness.runner holding the source tree, job.json and agent.py) and hands over to the agent. The agent is
# shipped per run, not baked into the image, so changing it never forces an image rebuild.
# The initramfs has already moved /proc, /sys and /dev onto the root; mount them only if it has not.
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mkdir -p /run /tmp /job /dev/pts /dev/shm
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
job=""
for d in /sys/block/vd*; do
  if [ "$(cat "$d/serial" 2>/dev/null)" = "hil-job" ]; then job="/dev/${d##*/}"; fi
done
if [ -n "$job" ] && tar -xf "$job" -C /job; then
  exec /usr/bin/python3 /job/agent.py
fi
echo "hil-init: job disk missing or unreadable; powering off"
sync
echo o > /proc/sysrq-trigger
# If power-off did not happen, exiting PID 1 panics the kernel; panic=1 + qemu -no-reboot ends the VM.
