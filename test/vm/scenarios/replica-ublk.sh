# A ublk device over a replica set of two servers, ext4 on it, fio --verify=crc32c on a file of
# the filesystem, while the daemon is SIGKILLed (the supervisor recovers it) and one server is
# SIGKILLed and restarted (ejected, then resynced from the writes it missed). At the end both
# replicas are in sync and their files are byte-identical, and fsck finds the filesystem clean.
source "$(dirname "$0")/lib.sh"
declare -A SPID
serve_on() { # port file
  $WSBLK serve --listen 127.0.0.1:$1 --export "d=file:$2,size=256M" >>/tmp/server-$1.log 2>&1 &
  SPID[$1]=$!
  for _ in $(seq 1 300); do
    [ "$(grep -c 'listening on' /tmp/server-$1.log 2>/dev/null)" -ge "${3:-1}" ] && return 0
    kill -0 "${SPID[$1]}" 2>/dev/null || fail "server $1 exited"
    sleep 0.1
  done
  fail "server $1 did not start"
}
replica_states() { $WSBLK list --json | node -e 'const d=JSON.parse(require("fs").readFileSync(0,"utf8"))[0]; console.log((d.replicas||[]).map(r=>r.state).join(" "))'; }
wait_states() { # "want" seconds (a `wsblk list` takes seconds in the guest: count time, not tries)
  local end=$((SECONDS + $2)) now
  while :; do
    now=$(replica_states)
    [ "$now" = "$1" ] && return 0
    [ $SECONDS -lt $end ] || fail "replicas are '$now', not '$1', after $2 s"
    sleep 1
  done
}
trap 'for p in "${SPID[@]}"; do kill -9 $p 2>/dev/null || true; done; $WSBLK disconnect --all >/dev/null 2>&1 || true' EXIT

step "two servers"
serve_on 7691 "$DATA/a.img"
serve_on 7692 "$DATA/b.img"
step "connect a replica set (supervised)"
DEV=$($WSBLK connect ws://127.0.0.1:7691/d,ws://127.0.0.1:7692/d --queues 2 --depth 64 --replica-timeout 4)
ID=ublk${DEV#/dev/ublkb}
wait_states "in-sync in-sync" 120
step "mkfs.ext4 and mount"
mkfs.ext4 -q -F "$DEV"
MNT=/tmp/mnt-r
mkdir -p $MNT
mount "$DEV" $MNT
step "fio verify on a file of the filesystem, in the background"
cd /tmp
fio --name=verify --filename=$MNT/fio.dat --direct=1 --ioengine=libaio --rw=randwrite --bs=4k --iodepth=16 \
  --size=${FIO_SIZE:-32M} --verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0 \
  --rate=,${FIO_RATE:-400k} --output-format=json --output=/tmp/fio.json > /tmp/fio.out 2>&1 &
FIO=$!
sleep 4
OLD=$(daemon_pid "$ID")
step "kill -9 the daemon $OLD (the supervisor recovers it)"
kill -9 "$OLD"
NEW=$(wait_state "$ID" live 120 "$OLD")
echo "recovered by daemon $NEW"
sleep 3
step "kill -9 server 7692: the replica is ejected, I/O goes on"
kill -9 "${SPID[7692]}"
wait_states "in-sync unreachable" 60
kill -0 $FIO || fail "fio ended early: $(tail -5 /tmp/fio.out)"
sleep 4
step "restart server 7692: the replica resyncs"
serve_on 7692 "$DATA/b.img" 2
step "wait for fio"
wait_fio_verify
wait_states "in-sync in-sync" 180
grep -h "resync of\|ejecting\|epoch" "$WSBLK_RUN_DIR"/*.log | tail -8
step "the recovered daemon's namespace holds no copy of the mount"
# It was started (by the supervisor) after the mount: a copy there would keep the filesystem
# alive past our umount, and its last writes would be lost at disconnect.
DPID=$(daemon_pid "$ID")
MAJMIN=$(cat /sys/class/block/${DEV#/dev/}/dev)
n=0
while awk -v d="$MAJMIN" '$3 == d { found = 1 } END { exit !found }' /proc/$DPID/mountinfo; do
  n=$((n + 1)); [ $n -lt 20 ] || fail "daemon $DPID still has $DEV mounted: $(awk -v d="$MAJMIN" '$3 == d { print $5 }' /proc/$DPID/mountinfo)"
  sleep 0.5
done
grep -h "detached the daemon's copy" "$WSBLK_RUN_DIR"/*.log || true
step "unmount, flush, compare the replicas' files"
umount $MNT
$WSBLK disconnect "$DEV"
check no_ublk_devices
cmp "$DATA/a.img" "$DATA/b.img" || fail "the replicas differ after the resync"
echo "replicas: identical ($(stat -c %s "$DATA/a.img") bytes)"
step "fsck"
fsck.ext4 -n -f "$DATA/a.img" >/tmp/fsck.out 2>&1 || { cat /tmp/fsck.out; fail "fsck found errors"; }
echo "SCENARIO OK"
