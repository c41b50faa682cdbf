# (e) bad options: a clear error, the documented exit code, and no device left behind.
source "$(dirname "$0")/lib.sh"
expect() { # exit-code pattern cmd...
  local want=$1 pat=$2; shift 2
  local out rc
  out=$("$@" 2>&1) && rc=0 || rc=$?
  echo "[$rc] $out"
  [ "$rc" = "$want" ] || fail "expected exit $want from: $*"
  echo "$out" | grep -qE "$pat" || fail "expected /$pat/ from: $*"
  check no_ublk_devices
}
step "server down"
expect 3 "connection refused" $WSBLK connect ws://127.0.0.1:$PORT/d0 --connect-timeout 2
start_server "d0=memory:64M" "odd=memory:1049088"
step "depth 0"
expect 2 "depth.*not a whole number from 1 to 4096" $WSBLK connect ws://127.0.0.1:$PORT/d0 --depth 0
step "max-io not a multiple of 4K"
expect 2 "max-io must be a multiple of 4K" $WSBLK connect ws://127.0.0.1:$PORT/d0 --max-io 1000
step "size not a multiple of the block size"
expect 1 "not a multiple of the block size 4096" $WSBLK connect ws://127.0.0.1:$PORT/odd --block-size 4096
step "unknown export"
expect 3 "unknown export: no export 'nope'" $WSBLK connect ws://127.0.0.1:$PORT/nope
[ -z "$(ls "$WSBLK_RUN_DIR"/*.json 2>/dev/null)" ] || fail "state left in the run dir"
step "a good connect still works"
DEV=$($WSBLK connect ws://127.0.0.1:$PORT/odd --block-size 512)
check test -b "$DEV"
$WSBLK disconnect "$DEV"
check no_ublk_devices
echo "SCENARIO OK"
