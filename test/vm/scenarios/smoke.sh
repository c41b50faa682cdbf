# A quick check of the ublk path: connect, I/O with dd, list, disconnect.
source "$(dirname "$0")/lib.sh"
step "server"
start_server
step "connect"
DEV=$($WSBLK connect ws://127.0.0.1:$PORT/d0)
echo "device: $DEV"
check test -b "$DEV"
$WSBLK list
step "dd"
dd if=/dev/urandom of=/tmp/pattern bs=1M count=8 status=none
dd if=/tmp/pattern of="$DEV" bs=1M oflag=direct status=none
dd if="$DEV" of=/tmp/back bs=1M count=8 iflag=direct status=none
check cmp /tmp/pattern /tmp/back
step "disconnect"
$WSBLK disconnect "$DEV"
check no_ublk_devices
echo "SMOKE OK"
