# (b) fio --verify=crc32c random writes on the raw device while the daemon is SIGKILLed three
# times: twice recovered by the supervisor, once (supervisor killed too) by `wsblk recover`.
source "$(dirname "$0")/lib.sh"
step "server"
start_server "d0=file:$DATA/d0.img,size=256M"
step "connect (supervised)"
DEV=$($WSBLK connect ws://127.0.0.1:$PORT/d0 --queues 2 --depth 64)
check test -b "$DEV"
ID=ublk${DEV#/dev/ublkb}
step "fio verify in the background"
cd /tmp
fio --name=verify --filename="$DEV" --direct=1 --ioengine=libaio --rw=randwrite --bs=4k --iodepth=16 \
  --size=${FIO_SIZE:-48M} --verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0 \
  --rate=,${FIO_RATE:-600k} --output-format=json --output=/tmp/fio.json > /tmp/fio.out 2>&1 &
FIO=$!
sleep 3
for round in 1 2; do
  OLD=$(daemon_pid "$ID")
  step "kill -9 daemon $OLD (round $round; the supervisor recovers)"
  kill -9 "$OLD"
  NEW=$(wait_state "$ID" live 120 "$OLD")
  echo "recovered by daemon $NEW"
  kill -0 $FIO || fail "fio ended early: $(tail -5 /tmp/fio.out)"
done
step "kill -9 supervisor and daemon (round 3; wsblk recover)"
SUP=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1])).supervisorPid ?? "")' "$WSBLK_RUN_DIR/$ID.json")
OLD=$(daemon_pid "$ID")
[ -n "$SUP" ] || fail "no supervisor pid recorded"
kill -9 "$SUP" "$OLD"
wait_state "$ID" quiesced 30 >/dev/null
$WSBLK list
$WSBLK recover "$ID" --no-supervise
wait_state "$ID" live 30 >/dev/null
echo "recovered by daemon $(daemon_pid "$ID")"
step "wait for fio"
wait_fio_verify
grep -c "reconnected\|resumed" "$WSBLK_RUN_DIR"/*.log /tmp/server.log || true
step "disconnect"
$WSBLK disconnect "$DEV"
check no_ublk_devices
echo "SCENARIO OK"
