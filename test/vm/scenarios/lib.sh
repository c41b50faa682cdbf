# Helpers for the ublk scenarios that run inside the VM guest (sourced by each scenario).
# Everything writable lives in /tmp (tmpfs) or $WSBLK_VM_OUT; the repo is read-only here.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
WSBLK="node $REPO/client/bin/wsblk.js"
export WSBLK_RUN_DIR=/tmp/wsblk-run
PORT=7690
DATA=/tmp/wsblk-data
mkdir -p "$DATA" "$WSBLK_RUN_DIR"

step() { printf '\n== %s (%s s)\n' "$*" "$SECONDS"; }
fail() { printf 'FAIL: %s\n' "$*"; dump_logs; exit 1; }
check() { if ! "$@"; then fail "check failed: $*"; fi; }

dump_logs() {
  for f in "$WSBLK_RUN_DIR"/*.log /tmp/server.log; do
    [ -f "$f" ] && { echo "--- $f"; tail -40 "$f"; }
  done
  return 0
}

SERVER_PID=
start_server() { # [export spec...]
  local specs=("$@")
  [ ${#specs[@]} -gt 0 ] || specs=("d0=file:$DATA/d0.img,size=256M")
  local args=()
  for s in "${specs[@]}"; do args+=(--export "$s"); done
  $WSBLK serve --listen 127.0.0.1:$PORT "${args[@]}" >>/tmp/server.log 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 300); do
    grep -q "listening on" /tmp/server.log 2>/dev/null && [ "$(grep -c 'listening on' /tmp/server.log)" -ge "${SERVER_STARTS:-1}" ] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || fail "server exited"
    sleep 0.1
  done
  fail "server did not start"
}

# Waits for the fio job $FIO (started with --output-format=json --output=/tmp/fio.json), prints
# its figures, and fails unless it verified every byte it wrote without an error.
wait_fio_verify() {
  local rc=0
  wait "$FIO" || rc=$?
  cat /tmp/fio.out
  node -e '
const job = JSON.parse(require("fs").readFileSync("/tmp/fio.json", "utf8")).jobs[0];
console.log(`fio: error=${job.error} write=${job.write.io_bytes} read(verify)=${job.read.io_bytes} write_iops=${job.write.iops.toFixed(0)}`);
if (job.error !== 0 || job.read.io_bytes !== job.write.io_bytes || job.write.io_bytes === 0) process.exit(1);
' || fail "fio verify failed"
  [ "$rc" = 0 ] || fail "fio exit code $rc"
}

kill_server() { kill -9 "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }

DEVCTL="node $REPO/test/vm/scenarios/devctl.mjs"
# The pid serving the queues of ublk device $1 (ublkN), as the kernel knows it.
daemon_pid() { $DEVCTL pid "$1"; }
# Waits until device $1 is in kernel state $2 (live, quiesced) within $3 s; with $4, served by
# another pid than $4. Prints the pid.
wait_state() { $DEVCTL wait "$1" "$2" "${4:-}" "$3" || fail "device $1 did not reach $2"; }

no_ublk_devices() {
  local left
  left=$(ls /dev/ublkc* /dev/ublkb* 2>/dev/null || true)
  [ -z "$left" ] || { echo "devices left: $left"; return 1; }
}

cleanup() {
  $WSBLK disconnect --all >/dev/null 2>&1 || true
  kill_server
}
trap cleanup EXIT
