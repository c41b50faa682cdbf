# mdadm raid1 over two ublk devices, each on its own `wsblk serve`, with a write-intent bitmap
# and failfast members, fio verify on the array: one server SIGKILLed mid-run, the array
# degrades (the member's failfast requests fail with EIO at the deadline instead of hanging) and
# fio sees no error; the server comes back, `mdadm --re-add` resyncs only the bitmap's dirty
# chunks, fio verify passes, md's check finds no mismatch and `wsblk verify` agrees on the data.
# File exports (on the guest's tmpfs), not memory ones: a restarted server must still hold the
# member's superblock and everything written before the kill, or --re-add has nothing to re-add.
source "$(dirname "$0")/lib.sh"
export MDADM_NO_UDEV=1 # no udev in the guest: mdadm makes /dev/md0 itself
MD=/dev/md0
PORT_B=7691
SIZE=64M

declare -A SRV_PID=()
start_srv() { # NAME PORT
  local log=/tmp/server-$1.log starts
  starts=$(( $(grep -c 'listening on' "$log" 2>/dev/null || true) + 1 ))
  $WSBLK serve --listen 127.0.0.1:$2 --export "$1=file:$DATA/$1.img,size=$SIZE" >>"$log" 2>&1 &
  SRV_PID[$1]=$!
  for _ in $(seq 1 300); do
    [ "$(grep -c 'listening on' "$log" 2>/dev/null || true)" -ge "$starts" ] && return 0
    kill -0 "${SRV_PID[$1]}" 2>/dev/null || fail "server $1 exited: $(tail -3 "$log")"
    sleep 0.1
  done
  fail "server $1 did not start"
}
kill_srv() { kill -9 "${SRV_PID[$1]}" 2>/dev/null || true; wait "${SRV_PID[$1]}" 2>/dev/null || true; }
md_attr() { cat "/sys/block/md0/md/$1"; }
# Waits up to $2 s for the shell condition $1.
wait_for() {
  local t=$(( SECONDS + $2 ))
  until eval "$1"; do
    [ $SECONDS -lt $t ] || fail "timed out after $2 s waiting for: $1"
    sleep 0.5
  done
}
md_cleanup() {
  mdadm --stop $MD >/dev/null 2>&1 || true
  $WSBLK disconnect --all >/dev/null 2>&1 || true
  for n in "${!SRV_PID[@]}"; do kill_srv "$n"; done
  for f in /tmp/server-*.log; do [ -f "$f" ] && { echo "--- $f"; tail -15 "$f"; }; done
  return 0
}
trap md_cleanup EXIT

step "two servers, one ublk device on each"
start_srv a $PORT
start_srv b $PORT_B
A=$($WSBLK connect ws://127.0.0.1:$PORT/a --queues 1 --depth 32)
B=$($WSBLK connect ws://127.0.0.1:$PORT_B/b --queues 1 --depth 32)
echo "members: $A $B"

step "mdadm --create raid1, internal bitmap, failfast members"
# Both members are all zeros: --assume-clean skips the initial resync (TCG is slow).
mdadm --create $MD --run --level=1 --raid-devices=2 --metadata=1.2 --assume-clean \
  --bitmap=internal --bitmap-chunk=1M --failfast "$A" "$B"
mdadm --detail $MD | grep -E 'State :|Active Devices|Working Devices|Intent Bitmap'
for d in ${A#/dev/} ${B#/dev/}; do
  grep -q failfast "/sys/block/md0/md/dev-$d/state" || fail "$d is not a failfast member: $(cat /sys/block/md0/md/dev-$d/state)"
done
DATA_OFFSET=$(( $(cat /sys/block/md0/md/dev-${A#/dev/}/offset) * 512 ))

step "fio verify on the array"
cd /tmp
fio --name=verify --filename=$MD --direct=1 --ioengine=libaio --rw=randwrite --bs=4k --iodepth=8 \
  --size=${FIO_SIZE:-24M} --verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0 \
  --rate=,${FIO_RATE:-400k} --output-format=json --output=/tmp/fio.json > /tmp/fio.out 2>&1 &
FIO=$!
sleep 8

step "kill -9 server b: the array degrades"
kill_srv b
T0=$SECONDS
wait_for '[ "$(md_attr degraded)" = 1 ]' 60
echo "degraded after $(( SECONDS - T0 )) s; ${B#/dev/}: $(cat /sys/block/md0/md/dev-${B#/dev/}/state)"
kill -0 $FIO || fail "fio ended early: $(tail -5 /tmp/fio.out)"
sleep 4
mdadm -X "$A" | grep -E 'Chunksize|Bitmap :'

step "restart server b, wait for the device to reconnect, --re-add"
# fio pauses meanwhile: on a busy TCG guest a cold server can take longer than the client's 5 s
# to welcome its first reconnect (see the report of issue 13: the session it then made blocks
# the client's next attempts).
kill -STOP $FIO
start_srv b $PORT_B
wait_for "grep -q 'reconnected (session' $WSBLK_RUN_DIR/ublk${B#/dev/ublkb}.log" 60
grep 'reconnected (session' "$WSBLK_RUN_DIR/ublk${B#/dev/ublkb}.log"
kill -CONT $FIO
mdadm $MD --remove failed
mdadm $MD --re-add "$B"
wait_for '[ "$(md_attr degraded)" = 0 ] && [ "$(md_attr sync_action)" = idle ]' 180
echo "resynced after $(( SECONDS - T0 )) s since the kill"
dmesg | grep -E 'md/raid1:md0|md: (recovery|md0)' | tail -8
kill -0 $FIO || echo "note: fio's write phase ended before the resync finished"

step "wait for fio"
wait_fio_verify

step "md check: no mismatch"
echo check > /sys/block/md0/md/sync_action
sleep 1
wait_for '[ "$(md_attr sync_action)" = idle ]' 180
echo "mismatch_cnt=$(md_attr mismatch_cnt)"
[ "$(md_attr mismatch_cnt)" = 0 ] || fail "md check found mismatches"

step "wsblk verify: the members hold the same data past md's superblock and bitmap"
mdadm --stop $MD
rc=0
$WSBLK verify --json ws://127.0.0.1:$PORT/a ws://127.0.0.1:$PORT_B/b > /tmp/verify.json || rc=$?
[ "$rc" = 0 ] || [ "$rc" = 1 ] || fail "wsblk verify exit $rc"
node -e '
const v = JSON.parse(require("fs").readFileSync("/tmp/verify.json", "utf8"));
const dataOffset = Number(process.argv[1]);
const past = v.mismatches.filter((m) => m.offset + m.length > dataOffset);
console.log(`wsblk verify: ${v.mismatches.length} mismatching ranges, all below the data offset ${dataOffset}: ${past.length === 0}`);
process.exit(past.length === 0 ? 0 : 1);
' "$DATA_OFFSET" || fail "the members differ in md's data area"

step "disconnect"
$WSBLK disconnect --all
check no_ublk_devices
echo "SCENARIO OK"
