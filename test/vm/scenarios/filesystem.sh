# (a) connect, mkfs.ext4, mount, write files, checksum, unmount, disconnect, connect again,
# mount, checksums match.
source "$(dirname "$0")/lib.sh"
step "server"
start_server "d0=file:$DATA/d0.img,size=256M"
step "connect"
DEV=$($WSBLK connect ws://127.0.0.1:$PORT/d0)
check test -b "$DEV"
step "the daemon has its own mount namespace"
PID=$(daemon_pid "ublk${DEV#/dev/ublkb}")
[ "$(readlink /proc/$PID/ns/mnt)" != "$(readlink /proc/self/ns/mnt)" ] || fail "daemon $PID shares our mount namespace"
echo "daemon $PID: $(readlink /proc/$PID/ns/mnt), ours: $(readlink /proc/self/ns/mnt)"
step "mkfs + mount"
mkfs.ext4 -q -F "$DEV"
mkdir -p /tmp/mnt
mount "$DEV" /tmp/mnt
step "write files"
for i in 1 2 3 4 5 6 7 8; do head -c $((i * 1024 * 1024 + i * 777)) /dev/urandom > /tmp/mnt/file$i; done
mkdir /tmp/mnt/dir && seq 1 20000 > /tmp/mnt/dir/numbers
(cd /tmp/mnt && find . -type f -name '*' ! -path './lost+found*' -exec sha256sum {} + | sort -k2) > /tmp/sums.before
umount /tmp/mnt
step "disconnect"
$WSBLK disconnect "$DEV"
check no_ublk_devices
step "connect again"
DEV=$($WSBLK connect ws://127.0.0.1:$PORT/d0)
mount "$DEV" /tmp/mnt
(cd /tmp/mnt && find . -type f -name '*' ! -path './lost+found*' -exec sha256sum {} + | sort -k2) > /tmp/sums.after
umount /tmp/mnt
check diff /tmp/sums.before /tmp/sums.after
echo "files: $(wc -l < /tmp/sums.after), checksums match"
$WSBLK disconnect "$DEV"
check no_ublk_devices
echo "SCENARIO OK"
