# (c) the server SIGKILLed and restarted twice during fio verify: no error.
source "$(dirname "$0")/lib.sh"
step "server"
start_server "d0=file:$DATA/d0.img,size=256M"
step "connect"
DEV=$($WSBLK connect ws://127.0.0.1:$PORT/d0 --queues 2 --depth 64)
cd /tmp
fio --name=verify --filename="$DEV" --direct=1 --ioengine=libaio --rw=randwrite --bs=4k --iodepth=16 \
  --size=${FIO_SIZE:-32M} --verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0 \
  --rate=,${FIO_RATE:-600k} --output-format=json --output=/tmp/fio.json > /tmp/fio.out 2>&1 &
FIO=$!
for round in 1 2; do
  sleep 6
  step "kill -9 the server (round $round) and restart it"
  kill_server
  sleep 1
  SERVER_STARTS=$((round + 1)) start_server "d0=file:$DATA/d0.img"
  kill -0 $FIO || fail "fio ended early: $(tail -5 /tmp/fio.out)"
done
step "wait for fio"
wait_fio_verify
$WSBLK list --json | grep -E '"reconnects"'
step "disconnect"
$WSBLK disconnect "$DEV"
check no_ublk_devices
echo "SCENARIO OK"
