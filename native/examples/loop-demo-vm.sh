#!/usr/bin/env bash
# Proves the native ublk addon against a real ublk_drv, inside the test VM (run as root there):
#   test/vm/run.sh --timeout 1200 bash native/examples/loop-demo-vm.sh
# Steps: serve a file-backed device from JS (loop-demo.mjs); dd round trip; fio verify; mkfs +
# mount; kill -9 the server in the middle of a fio verify run and take the device over with a
# second process (user recovery with reissue); fio must finish with no error; stop and delete;
# then the control error paths and timeouts (loop-demo.mjs checks).
# Logs go to $WSBLK_VM_OUT when set.
set -u
cd "$(dirname "$0")/../.."
demo=native/examples/loop-demo.mjs
out=${WSBLK_VM_OUT:-/tmp}
img=/tmp/wsblk-demo.img
fails=0
say() { echo "== $*"; }
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }

# Waits until FILE contains PATTERN (up to $3 seconds); prints the matching line.
wait_for() {
  local i
  for i in $(seq 1 $(($3 * 5))); do
    if grep -q "$2" "$1" 2>/dev/null; then grep "$2" "$1" | head -n1; return 0; fi
    sleep 0.2
  done
  return 1
}

say "kernel $(uname -r); fio: $(command -v fio || echo none)"
rm -f "$img"

say "serve (ADD_DEV, SET_PARAMS, queues, START_DEV)"
t0=$(date +%s)
node "$demo" serve --backing "$img" --size 256M --queues 2 --depth 64 >"$out/serve.log" 2>&1 &
spid=$!
line=$(wait_for "$out/serve.log" READY 120) || { cat "$out/serve.log"; bad "server not ready"; exit 1; }
id=$(echo "$line" | sed -n 's/.*id=\([0-9]*\).*/\1/p')
dev=/dev/ublkb$id
ok "server pid $spid ready in $(( $(date +%s) - t0 )) s: $line"
cat "$out/serve.log"
echo "size $(blockdev --getsize64 "$dev") logical $(blockdev --getss "$dev") physical $(blockdev --getpbsz "$dev")"
cat /sys/block/ublkb$id/queue/write_cache /sys/block/ublkb$id/queue/fua \
    /sys/block/ublkb$id/queue/discard_max_bytes /sys/block/ublkb$id/queue/max_hw_sectors_kb 2>/dev/null | tr '\n' ' '; echo

say "dd round trip (8 MiB, O_DIRECT) and the backing file"
head -c 8M /dev/urandom >/tmp/pattern
dd if=/tmp/pattern of="$dev" bs=1M oflag=direct conv=fsync status=none || bad "dd write"
dd if="$dev" of=/tmp/readback bs=1M count=8 iflag=direct status=none || bad "dd read"
cmp /tmp/pattern /tmp/readback && ok "device reads back what was written" || bad "readback differs"
cmp <(head -c 8M "$img") /tmp/pattern && ok "backing file holds the data" || bad "backing file differs"
dd if=/tmp/pattern of="$dev" bs=4k count=1 seek=1000 oflag=direct,dsync status=none && ok "O_DSYNC write (FUA)" || bad "dsync write"
blkdiscard -o 0 -l 4M "$dev" && ok "blkdiscard" || bad "blkdiscard"
[ "$(dd if="$dev" bs=1M count=4 iflag=direct status=none | tr -d '\0' | wc -c)" = 0 ] && ok "discarded range reads as zeros" || bad "discarded range not zero"
blkdiscard -z -o 4M -l 4M "$dev" && ok "blkdiscard -z (WRITE_ZEROES)" || bad "blkdiscard -z"

if command -v fio >/dev/null; then
  say "fio verify (libaio, direct, 4k-128k random writes, crc32c)"
  fio --name=verify --filename="$dev" --ioengine=libaio --direct=1 --rw=randwrite --bsrange=4k-128k \
      --size=32M --iodepth=32 --verify=crc32c --verify_fatal=1 --do_verify=1 --randrepeat=0 \
      --verify_state_save=0 --output="$out/fio1.txt" && ok "fio verify passed" || { bad "fio verify"; cat "$out/fio1.txt"; }
  grep -E "IOPS|err=" "$out/fio1.txt" | head -n4
fi

say "mkfs.ext4 + mount + write + umount"
mkfs.ext4 -q -F "$dev" && mkdir -p /tmp/mnt && mount "$dev" /tmp/mnt && cp /tmp/pattern /tmp/mnt/p &&
  sync && cmp /tmp/pattern /tmp/mnt/p && umount /tmp/mnt && ok "ext4 works on $dev" || { bad "ext4"; umount /tmp/mnt 2>/dev/null; }

say "kill -9 the server during fio, recover with a new process"
fio_pid=
if command -v fio >/dev/null; then
  fio --name=crash --filename="$dev" --ioengine=libaio --direct=1 --rw=randwrite --bsrange=4k-64k \
      --size=48M --iodepth=32 --verify=crc32c --verify_fatal=1 --do_verify=1 --randrepeat=0 \
      --verify_state_save=0 --output="$out/fio2.txt" &
  fio_pid=$!
  sleep 4
fi
kill -9 "$spid"
wait "$spid" 2>/dev/null
ok "server $spid killed"
t0=$(date +%s)
node "$demo" recover --backing "$img" --id "$id" >"$out/recover.log" 2>&1 &
rpid=$!
wait_for "$out/recover.log" RECOVERED 180 >/dev/null && ok "recovered in $(( $(date +%s) - t0 )) s (node startup included)" ||
  { bad "recovery"; cat "$out/recover.log"; }
cat "$out/recover.log"
if [ -n "$fio_pid" ]; then
  if wait "$fio_pid"; then ok "fio across kill -9 + recovery: no error, verify passed"; else bad "fio across recovery"; fi
  grep -E "IOPS|err=|verify" "$out/fio2.txt" | head -n6
fi
dd if="$dev" of=/dev/null bs=1M count=16 iflag=direct status=none && ok "device readable after recovery" || bad "read after recovery"

say "stop and delete (SIGTERM to the recovered daemon)"
kill -TERM "$rpid"
for i in $(seq 1 300); do kill -0 "$rpid" 2>/dev/null || break; sleep 0.2; done
wait "$rpid"; rc=$?
tail -n 3 "$out/recover.log"
[ "$rc" = 0 ] && ok "daemon stopped and deleted the device" || bad "daemon exit status $rc"
[ ! -e "$dev" ] && [ ! -e /dev/ublkc$id ] && ok "$dev and /dev/ublkc$id are gone" || { bad "device nodes remain"; ls -l /dev/ublk*; }

say "control error paths, timeouts and in-process I/O (loop-demo.mjs checks)"
node "$demo" checks >"$out/checks.log" 2>&1 && ok "checks passed" || bad "checks"
cat "$out/checks.log"

say "result: $fails failure(s)"
[ "$fails" = 0 ]
