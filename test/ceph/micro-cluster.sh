#!/usr/bin/env bash
# A throwaway Ceph cluster on loopback for the RBD tests: one monitor, one OSD on the in-memory
# object store (memstore), authentication off, pools of size 1, pool `rbd` initialised.
# The recipe follows ceph/go-ceph's testing/containers/micro-osd.sh, without mgr/mds/rgw.
#   micro-cluster.sh start DIR   writes DIR/ceph.conf (CEPH_CONF for clients) once the pool is ready
#   micro-cluster.sh stop DIR    kills the daemons started in DIR (by their pid files)
set -euo pipefail

cmd=${1:?usage: micro-cluster.sh start|stop DIR}
dir=$(realpath "${2:?usage: micro-cluster.sh start|stop DIR}")

stop() {
  local pid
  for f in "$dir"/run/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    kill -KILL "$pid" 2>/dev/null || true
  done
}

if [ "$cmd" = stop ]; then stop; exit 0; fi
[ "$cmd" = start ] || { echo "micro-cluster.sh: unknown command '$cmd' (start or stop)" >&2; exit 2; }

mkdir -p "$dir/log" "$dir/run" "$dir/mon" "$dir/osd"
# A free port for the monitor (several clusters may run at once, one per test file).
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
conf="$dir/ceph.conf"
fsid=$(cat /proc/sys/kernel/random/uuid)
cat > "$conf.tmp" <<CONF
[global]
fsid = $fsid
mon host = v1:127.0.0.1:$port
ms bind msgr2 = false
public network = 127.0.0.0/8
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
osd crush chooseleaf type = 0
run dir = $dir/run
pid file = $dir/run/\$name.pid
log file = $dir/log/\$name.log
admin socket = $dir/run/\$name.\$pid.asok
mon allow pool delete = true
mon data avail crit = 0
mon warn on pool no redundancy = false
# The tests blocklist a gateway: keep that short-lived, the cluster is thrown away anyway.
mon osd blocklist default expire = 600

[mon.a]
mon data = $dir/mon
public addr = v1:127.0.0.1:$port

[osd.0]
osd data = $dir/osd
osd objectstore = memstore
# The OSD is placed in the CRUSH map by this script; its own update at boot is refused by the
# monitor now and then ("wrong fsid"), which stops the OSD.
osd crush update on start = false
osd class update on start = false
memstore device bytes = 1073741824
osd class load list = *
osd class default list = *
osd max object name len = 256
osd max object namespace len = 64

[client]
log file = $dir/log/client.\$pid.log
CONF
mv "$conf.tmp" "$conf.boot"
export CEPH_CONF="$conf.boot"
# A cluster that does not come up fails the start in seconds, not after the 300 s default.
ceph() { command ceph --connect-timeout 20 "$@"; }

monmaptool --create --fsid "$fsid" --addv a "[v1:127.0.0.1:$port]" "$dir/monmap" >"$dir/log/mkfs.log" 2>&1
ceph-mon --id a --mkfs --monmap "$dir/monmap" --keyring /dev/null >>"$dir/log/mkfs.log" 2>&1
touch "$dir/mon/keyring"
ceph-mon --id a
osd_uuid=$(cat /proc/sys/kernel/random/uuid)
osd=$(ceph osd create "$osd_uuid")
ceph osd crush add "osd.$osd" 1 root=default >/dev/null 2>&1
ceph-osd --id "$osd" --mkfs --osd-uuid "$osd_uuid" >>"$dir/log/mkfs.log" 2>&1
ceph-osd --id "$osd"
ceph osd pool create rbd 8 >/dev/null 2>&1
rbd pool init rbd
# Clients find the cluster by this file; it appears only once the pool takes I/O.
mv "$conf.boot" "$conf"
