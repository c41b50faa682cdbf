#!/usr/bin/env bash
# Checks the VM harness end to end: prepare, boot, modules, devices appearing in
# the chroot (loop, ublk), io_uring (fio, if installed), ext4, the writable
# scratch share, exit status passing and (with --timeout-check) the timeout.
#   bash test/vm/selftest.sh [--timeout-check]
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fails=0
check() { if [ "$1" = "$2" ]; then echo "ok   $3"; else echo "FAIL $3 (got $1, want $2)"; fails=$((fails + 1)); fi; }

bash "$here/prepare.sh" || exit 1
out=$(mktemp -d "${TMPDIR:-/tmp}/wsblk-vm-selftest.XXXXXX")
trap 'rm -rf "$out"' EXIT
smoke=
if command -v cc >/dev/null; then
  mkdir -p "$out/s1" # the scratch share of the first run: the guest sees it
  cc -O2 -Wall -o "$out/s1/ublk-smoke" "$here/ublk-smoke.c" && smoke=$out/s1/ublk-smoke
else
  echo "note: no C compiler, skipping the ublk ADD_DEV/DEL_DEV check"
fi

cat >"$out/guest.sh" <<'EOF'
set -u
r=0
step() { echo "== $*"; }
step "kernel $(uname -r)"
step modules; cut -d' ' -f1 /proc/modules | sort | tr '\n' ' '; echo
step "ublk-control"; ls -l /dev/ublk-control || r=1
step node; node -e 'console.log(process.version, require("os").cpus().length + " cpus")' || r=1
step "scratch share"; echo hello >"$WSBLK_VM_OUT/hello" || r=1
step "read-only root"; if touch "$PWD/.wsblk-vm-ro-test" 2>/dev/null; then echo "root is writable!"; r=1; else echo "root is read-only, as it should be"; fi
step "loop + ext4 (device nodes created after boot appear)"
truncate -s 64M /tmp/img && mkfs.ext4 -q /tmp/img || r=1
for i in $(seq 1 10); do losetup -f /tmp/img || r=1; done
dev=$(losetup -j /tmp/img | cut -d: -f1 | sort -V | tail -n1); ls -l "$dev" || r=1
mkdir -p /tmp/mnt && mount "$dev" /tmp/mnt && echo data >/tmp/mnt/f && umount /tmp/mnt && echo "mounted ext4 on $dev" || r=1
losetup -D
if command -v fio >/dev/null; then
  step "io_uring (fio)"
  cd /tmp && fio --name=iou --filename=/tmp/fio.dat --size=32M --ioengine=io_uring --rw=randrw --bs=4k \
    --iodepth=16 --direct=1 --runtime=3 --time_based --verify=crc32c --verify_state_save=0 \
    --output-format=terse --terse-version=3 >/tmp/fio.out || r=1
  awk -F';' '{ printf "fio io_uring: err=%s read_iops=%s write_iops=%s\n", $5, $8, $49 }' /tmp/fio.out
  [ "$(cut -d';' -f5 /tmp/fio.out)" = 0 ] || r=1
fi
if [ -n "${SMOKE:-}" ]; then step "ublk ADD_DEV/DEL_DEV"; "$SMOKE" || r=1; fi
exit $r
EOF

start=$(date +%s.%N)
bash "$here/run.sh" --verbose --scratch "$out/s1" --env SMOKE="$smoke" -- bash "$out/guest.sh"
check $? 0 "guest checks"
check "$(cat "$out/s1/hello" 2>/dev/null)" hello "file written to WSBLK_VM_OUT is on the host"

s=$(date +%s.%N)
bash "$here/run.sh" -- node -e 0
check $? 0 "node -e 0"
echo "     boot + node -e 0: $(awk -v a="$s" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s"

bash "$here/run.sh" --quiet -- false
check $? 1 "false gives 1"
bash "$here/run.sh" --quiet -- sh -c 'exit 42'
check $? 42 "exit 42 gives 42"
o=$(bash "$here/run.sh" -- sh -c 'echo to-stdout; echo to-stderr >&2' 2>"$out/err")
check "$o|$(cat "$out/err")" "to-stdout|to-stderr" "stdout and stderr kept apart"

if [ "${1:-}" = --timeout-check ]; then
  bash "$here/run.sh" --timeout 25 -- sleep 600 2>"$out/err"
  check $? 124 "hung guest killed at the timeout"
  grep -q TIMEOUT "$out/err" && echo "ok   timeout message" || { echo "FAIL timeout message"; fails=$((fails + 1)); }
fi
echo "selftest: $fails failure(s), $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.0f", b-a}') s"
[ "$fails" = 0 ]
