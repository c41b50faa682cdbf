# (f) the NBD export behind the kernel's own NBD client: wsblk connect --nbd, then nbd-client
# attaches /dev/nbd0. fio verify with mixed sizes (4k to 1M: large WRITE payloads are read
# straight into pooled buffers, large READ replies are lent frames) while the server is
# SIGKILLed and restarted once; then detach and disconnect.
source "$(dirname "$0")/lib.sh"
step "server"
start_server "d0=file:$DATA/d0.img,size=256M"
step "connect --nbd"
SOCK=/tmp/d0.sock
URI=$($WSBLK connect ws://127.0.0.1:$PORT/d0 --nbd $SOCK)
echo "uri: $URI"
step "nbd-client"
nbd-client -unix $SOCK /dev/nbd0 -b 512 || fail "nbd-client failed"
for _ in $(seq 1 100); do [ "$(cat /sys/block/nbd0/size)" != 0 ] && break; sleep 0.1; done
[ "$(cat /sys/block/nbd0/size)" = $((256 * 2048)) ] || fail "/dev/nbd0 has $(cat /sys/block/nbd0/size) sectors"
cd /tmp
fio --name=verify --filename=/dev/nbd0 --direct=1 --ioengine=libaio --rw=randwrite --bssplit=4k/50:64k/25:1m/25 \
  --iodepth=16 --size=${FIO_SIZE:-48M} --verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0 \
  --rate=${FIO_RATE:-2m},${FIO_RATE:-2m} --output-format=json --output=/tmp/fio.json > /tmp/fio.out 2>&1 &
FIO=$!
sleep 6
step "kill -9 the server and restart it"
kill_server
sleep 1
SERVER_STARTS=2 start_server "d0=file:$DATA/d0.img"
kill -0 $FIO || fail "fio ended early: $(tail -5 /tmp/fio.out)"
step "wait for fio"
wait_fio_verify
$WSBLK list --json | grep -E '"reconnects"'
step "detach and disconnect"
nbd-client -d /dev/nbd0 || fail "nbd-client -d failed"
$WSBLK disconnect --all
[ ! -e $SOCK ] || fail "the NBD socket $SOCK is left behind"
echo "SCENARIO OK"
