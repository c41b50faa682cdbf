# (d) disconnect while fio runs: fio gets errors, nothing hangs, no device left behind.
source "$(dirname "$0")/lib.sh"
step "server"
start_server "d0=memory:256M"
DEV=$($WSBLK connect ws://127.0.0.1:$PORT/d0)
cd /tmp
timeout 120 fio --name=busy --filename="$DEV" --direct=1 --ioengine=libaio --rw=randrw --bs=4k --iodepth=16 \
  --size=128M --time_based --runtime=100 --output=/tmp/fio.out > /dev/null 2>&1 &
FIO=$!
sleep 5
kill -0 $FIO || fail "fio is not running: $(cat /tmp/fio.out)"
step "disconnect under I/O"
timeout 90 $WSBLK disconnect "$DEV" || fail "disconnect failed or hung"
step "fio must end with errors, soon"
T0=$SECONDS
wait $FIO && FIO_RC=0 || FIO_RC=$?
echo "fio exit code $FIO_RC after $((SECONDS - T0)) s"
tail -5 /tmp/fio.out || true
[ "$FIO_RC" != 0 ] && [ "$FIO_RC" != 124 ] || fail "fio should fail with I/O errors (rc $FIO_RC)"
check no_ublk_devices
[ -z "$(ls "$WSBLK_RUN_DIR"/*.json 2>/dev/null)" ] || fail "state left in the run dir"
echo "SCENARIO OK"
