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
step "disconnect while the server is down and I/O waits for it"
DEV=$($WSBLK connect ws://127.0.0.1:$PORT/d0)
kill_server
timeout 120 dd if="$DEV" of=/dev/null bs=4k count=64 skip=1000 iflag=direct 2>/tmp/dd.err &
DD=$!
sleep 3
T0=$SECONDS
timeout 120 $WSBLK disconnect "$DEV" || fail "disconnect failed or hung with the server down"
echo "disconnect took $((SECONDS - T0)) s"
wait $DD && DD_RC=0 || DD_RC=$?
echo "dd exit code $DD_RC: $(tail -1 /tmp/dd.err)"
[ "$DD_RC" != 0 ] && [ "$DD_RC" != 124 ] || fail "dd should fail with an I/O error (rc $DD_RC)"
check no_ublk_devices
[ -z "$(ls "$WSBLK_RUN_DIR"/*.json 2>/dev/null)" ] || fail "state left in the run dir"
echo "SCENARIO OK"
