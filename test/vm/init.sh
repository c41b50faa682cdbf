#!/bin/sh
# /init of the wsblk test VM's initramfs (busybox). Copied in by prepare.sh.
# Loads the modules, mounts the host root (9p "hostroot", read-only) and the per-run
# scratch share (9p "scratch"), then chroots into the host root and runs
# <scratch>/.vm/cmd.sh, written by run.sh. Writes <scratch>/.vm/exit-code and
# <scratch>/.vm/dmesg.log, then resets the machine (qemu runs with -no-reboot, so it exits).
/bin/busybox --install -s /bin
export PATH=/bin

mount -t devtmpfs devtmpfs /dev
exec </dev/null >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys

log() { echo "wsblk-vm init: $*"; }
fail() {
  log "FATAL: $*"
  [ -d /scratch/.vm ] && echo "$*" >/scratch/.vm/init-error
  dmesg >/scratch/.vm/dmesg.log 2>/dev/null
  sync
  reboot -f
  sleep 10
  exit 1
}

for m in $(cat /lib/modules/order); do
  insmod "/lib/modules/$m.ko" || log "insmod $m failed"
done

opts=trans=virtio,version=9p2000.L,msize=512000
mount -t 9p -o "$opts" scratch /scratch || fail "cannot mount the scratch share"
[ -f /scratch/.vm/config ] || fail "no .vm/config in the scratch share"
. /scratch/.vm/config   # VM_OUT (guest = host path of the scratch dir), VM_ROOT_CACHE
echo "$(cut -d' ' -f1 /proc/uptime)" >/scratch/.vm/t-init

mount -t 9p -o "$opts,ro,cache=${VM_ROOT_CACHE:-loose}" hostroot /root || fail "cannot mount the host root share"
r=/root
mount -t proc proc $r/proc || fail "mount proc"
mount -t sysfs sysfs $r/sys || fail "mount sysfs"
# devtmpfs (not a bind of a static /dev): /dev/ublk-control, /dev/ublkcN and
# /dev/ublkbN created later by the kernel appear inside the chroot.
mount -t devtmpfs devtmpfs $r/dev || fail "mount devtmpfs"
mkdir -p $r/dev/pts $r/dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts $r/dev/pts
mount -t tmpfs -o mode=1777 tmpfs $r/dev/shm
[ -e $r/dev/fd ] || ln -s /proc/self/fd $r/dev/fd
[ -e $r/dev/stdin ] || ln -s /proc/self/fd/0 $r/dev/stdin
[ -e $r/dev/stdout ] || ln -s /proc/self/fd/1 $r/dev/stdout
[ -e $r/dev/stderr ] || ln -s /proc/self/fd/2 $r/dev/stderr
if [ -n "${VM_TMP_KEEP:-}" ]; then
  mkdir -p /keep && mount -o bind "$r$VM_TMP_KEEP" /keep || fail "cannot keep $VM_TMP_KEEP"
fi
mount -t tmpfs -o mode=1777 tmpfs $r/tmp || fail "mount /tmp"
if [ -n "${VM_TMP_KEEP:-}" ]; then
  mkdir -p "$r$VM_TMP_KEEP" && mount -o bind /keep "$r$VM_TMP_KEEP" || fail "cannot bind $VM_TMP_KEEP back"
fi
mount -t tmpfs -o mode=755 tmpfs $r/run || fail "mount /run"
[ -d $r/var/tmp ] && mount -t tmpfs -o mode=1777 tmpfs $r/var/tmp
[ -d $r/sys/kernel/debug ] && mount -t debugfs debugfs $r/sys/kernel/debug 2>/dev/null
[ -d $r/sys/fs/cgroup ] && mount -t cgroup2 cgroup2 $r/sys/fs/cgroup 2>/dev/null
mkdir -p "$r$VM_OUT" 2>/dev/null
mount -o bind /scratch "$r$VM_OUT" || fail "cannot bind the scratch share at $VM_OUT"

hostname wsblk-vm
ip link set lo up || log "lo up failed"

echo "$(cut -d' ' -f1 /proc/uptime)" >/scratch/.vm/t-start
chroot $r /usr/bin/env -i /bin/bash --noprofile --norc "$VM_OUT/.vm/cmd.sh" \
  </dev/null >>/scratch/.vm/stdout 2>>/scratch/.vm/stderr
rc=$?
echo "$(cut -d' ' -f1 /proc/uptime)" >/scratch/.vm/t-end
dmesg >/scratch/.vm/dmesg.log 2>/dev/null
echo "$rc" >/scratch/.vm/exit-code.tmp && mv /scratch/.vm/exit-code.tmp /scratch/.vm/exit-code
sync
reboot -f
sleep 10
