#!/usr/bin/env bash
# Runs one command as root inside a qemu (TCG) guest running Debian trixie's 6.12
# kernel, which has ublk_drv. The guest's root is this machine's root, shared
# read-only over virtio-9p, so the host's node, fio, the built project... all run
# there unchanged.
#
#   test/vm/run.sh [options] [--] COMMAND [ARG...]
#   test/vm/run.sh [options] SCRIPT            (a non-executable file runs with bash)
#
# Options:
#   --timeout SECONDS  kill the guest after this long, boot included (default 900,
#                      env WSBLK_VM_TIMEOUT)
#   --scratch DIR      use DIR as the writable scratch share (kept afterwards);
#                      default: a fresh ${TMPDIR:-/tmp}/wsblk-vm.XXXXXX, removed at the end
#                      unless --keep or the guest timed out/failed to run the command
#   --keep             keep the default scratch dir and print where it is
#   --env NAME=VALUE   set a variable for the command (repeatable)
#   --mem SIZE         guest memory (default 2G, env WSBLK_VM_MEM)
#   --smp N            guest CPUs (default 2, env WSBLK_VM_SMP)
#   --quiet            do not print the kernel log tail when the command fails
#   --verbose          print boot/command timings
#
# In the guest, the command runs chrooted into the host root, as root, with
# cwd = the current directory, stdin = /dev/null, and env: PATH (the host's, plus
# the sbin dirs), HOME=/tmp, TMPDIR=/tmp, WSBLK_VM=1, WSBLK_VM_OUT=<scratch dir>,
# every WSBLK_* and CI variable of the caller, and the --env ones.
# Writable there: /tmp, /run, /var/tmp, /dev/shm (guest tmpfs, gone afterwards) and
# WSBLK_VM_OUT, which is the scratch dir at the same path as on the host.
# The rest of the host root is read-only. /dev is a devtmpfs: /dev/ublk-control,
# /dev/ublkcN and /dev/ublkbN show up there. Modules loaded: see prepare.sh.
#
# A script path under /tmp, /run, /var/tmp or /dev/shm (invisible in the guest) is
# copied into the scratch dir first. The root share is mounted with cache=loose
# (node starts several times faster): files changed on the host while the guest
# runs may look stale there; WSBLK_VM_ROOT_CACHE=none turns that off.
# WSBLK_VM_APPEND replaces "quiet loglevel=5" on the kernel command line.
#
# The command's stdout and stderr stream to run.sh's stdout and stderr (through
# files on the scratch share, so they are files, not ttys or pipes, in the guest).
# Exit status: the command's; 124 if the guest was killed at the timeout;
# 125 if the harness failed (bad usage, prepare failed, guest died before the
# command finished: kernel panic, init error).
# Files in <scratch>/.vm/: stdout, stderr, exit-code, console.log (serial
# console: kernel messages at warning level and above, init's messages),
# dmesg.log (the full kernel log, dumped after the command), qemu.log, times.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${WSBLK_VM_CACHE:-/var/cache/wsblk-vm}
timeout=${WSBLK_VM_TIMEOUT:-900}
mem=${WSBLK_VM_MEM:-2G}
smp=${WSBLK_VM_SMP:-2}
scratch= keep=0 quiet=0 verbose=${WSBLK_VM_VERBOSE:-0}
extra_env=()

msg() { echo "wsblk-vm: $*" >&2; }
usage_error() { msg "$*"; msg "usage: test/vm/run.sh [--timeout S] [--scratch DIR] [--keep] [--env N=V] [--mem SIZE] [--smp N] [--quiet] [--verbose] [--] COMMAND [ARG...]"; exit 125; }

while [ $# -gt 0 ]; do
  case $1 in
    --) shift; break ;;
    --timeout) [ $# -ge 2 ] || usage_error "--timeout needs a value"; timeout=$2; shift 2 ;;
    --timeout=*) timeout=${1#*=}; shift ;;
    --scratch) [ $# -ge 2 ] || usage_error "--scratch needs a value"; scratch=$2; shift 2 ;;
    --scratch=*) scratch=${1#*=}; shift ;;
    --keep) keep=1; shift ;;
    --env) [ $# -ge 2 ] || usage_error "--env needs NAME=VALUE"; extra_env+=("$2"); shift 2 ;;
    --env=*) extra_env+=("${1#*=}"); shift ;;
    --mem) [ $# -ge 2 ] || usage_error "--mem needs a value"; mem=$2; shift 2 ;;
    --smp) [ $# -ge 2 ] || usage_error "--smp needs a value"; smp=$2; shift 2 ;;
    --quiet|-q) quiet=1; shift ;;
    --verbose|-v) verbose=1; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
    -*) usage_error "unknown option $1" ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || usage_error "no command given"
[[ $timeout =~ ^[0-9]+$ ]] && [ "$timeout" -gt 0 ] || usage_error "bad --timeout: $timeout"
for e in "${extra_env[@]}"; do
  [[ $e =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || usage_error "bad --env (want NAME=VALUE): $e"
done
cmd=("$@")
# A lone non-executable file is a script for bash.
if [ $# -eq 1 ] && [ -f "$1" ] && [ ! -x "$1" ]; then cmd=(bash "$1"); fi

command -v qemu-system-x86_64 >/dev/null || { msg "qemu-system-x86_64 not found (apt-get install qemu-system-x86)"; exit 125; }
command -v timeout >/dev/null || { msg "timeout (coreutils) not found"; exit 125; }
bash "$here/prepare.sh" --quiet || { msg "prepare.sh failed: the VM cannot run"; exit 125; }
# shellcheck disable=SC1091
. "$cache/vm.env"

# --- scratch dir -------------------------------------------------------------
own_scratch=0
if [ -n "$scratch" ]; then
  mkdir -p "$scratch" || { msg "cannot create scratch dir $scratch"; exit 125; }
  scratch=$(cd "$scratch" && pwd -P)
else
  scratch=$(mktemp -d "${TMPDIR:-/tmp}/wsblk-vm.XXXXXX") || { msg "mktemp failed"; exit 125; }
  scratch=$(cd "$scratch" && pwd -P)
  own_scratch=1
fi
case $scratch in
  /|/proc|/proc/*|/sys|/sys/*|/dev|/dev/*|*"'"*|*$'\n'*) msg "unusable scratch dir: $scratch"; exit 125 ;;
esac
v=$scratch/.vm
rm -rf "$v"
mkdir -p "$v" || exit 125
: >"$v/stdout"; : >"$v/stderr"

# A script given by a path the guest cannot see (/tmp, /run, /var/tmp, /dev/shm
# are fresh tmpfs there) is copied into the scratch dir.
i=0; [ "${cmd[0]}" = bash ] && [ ${#cmd[@]} -eq 2 ] && i=1
case ${cmd[$i]} in
  */*)
    if [ -f "${cmd[$i]}" ]; then
      real=$(readlink -f -- "${cmd[$i]}")
      case $real in
        /tmp/*|/run/*|/var/tmp/*|/dev/shm/*)
          # Inside the scratch dir, or inside a checkout under /tmp that the guest keeps
          # (see VM_TMP_KEEP below): visible as it is, with the files beside it.
          keep=$(git -C "$PWD" rev-parse --show-toplevel 2>/dev/null || echo "$PWD")
          case $real in "$scratch"/*|"$keep"/*) ;; *)
            cp -p -- "$real" "$v/script" || exit 125
            cmd[$i]=$v/script ;;
          esac ;;
      esac
    fi ;;
esac

# --- what the guest runs ---------------------------------------------------------
q() { printf '%q' "$1"; }
{
  echo "VM_OUT='$scratch'"
  echo "VM_ROOT_CACHE='${WSBLK_VM_ROOT_CACHE:-loose}'"
  # A checkout under /tmp (CI may clone there) would be hidden by the guest's fresh /tmp:
  # the guest binds it back at the same path (read-only, like the rest of the host root).
  top=$(git -C "$PWD" rev-parse --show-toplevel 2>/dev/null || echo "$PWD")
  case $top in /tmp/*) echo "VM_TMP_KEEP='$top'" ;; esac
} >"$v/config"
gpath=$PATH
for d in /usr/local/sbin /usr/sbin /sbin; do case ":$gpath:" in *":$d:"*) ;; *) gpath=$gpath:$d ;; esac; done
{
  echo "# written by test/vm/run.sh; run by bash in the guest, chrooted into the host root"
  echo "export PATH=$(q "$gpath") HOME=/tmp TMPDIR=/tmp USER=root LOGNAME=root"
  echo "export LANG=$(q "${LANG:-C.UTF-8}")"
  while IFS= read -r name; do
    case $name in WSBLK_*|CI) echo "export $name=$(q "${!name}")" ;; esac
  done < <(compgen -e)
  echo "export WSBLK_VM=1 WSBLK_VM_OUT=$(q "$scratch")"
  for e in "${extra_env[@]}"; do echo "export ${e%%=*}=$(q "${e#*=}")"; done
  echo "cd -- $(q "$PWD") 2>/dev/null || { echo 'wsblk-vm: the working directory is not visible in the guest (/tmp is a fresh tmpfs there); running in /' >&2; cd /; }"
  printf 'exec'; for a in "${cmd[@]}"; do printf ' %s' "$(q "$a")"; done; echo
} >"$v/cmd.sh"

# --- boot ----------------------------------------------------------------------
esc() { printf '%s' "${1//,/,,}"; } # qemu option values double their commas
append="console=ttyS0 ${WSBLK_VM_APPEND:-quiet loglevel=5} panic=-1 rdinit=/init mitigations=off tsc=unstable"
qemu=(qemu-system-x86_64 -accel tcg -cpu max -m "$mem" -smp "$smp"
  -nodefaults -no-user-config -display none -no-reboot
  -kernel "$WSBLK_VM_KERNEL" -initrd "$WSBLK_VM_INITRD" -append "$append"
  -chardev "file,id=con,path=$(esc "$v/console.log")" -serial chardev:con
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap
  -virtfs "local,path=$(esc "$scratch"),mount_tag=scratch,security_model=none,multidevs=remap")

t0=$(date +%s.%N)
timeout -k 10 "$timeout" "${qemu[@]}" </dev/null >"$v/qemu.log" 2>&1 &
qpid=$!
tail -q -c +1 -s 0.2 --pid=$qpid -f "$v/stdout" &
tout=$!
tail -q -c +1 -s 0.2 --pid=$qpid -f "$v/stderr" >&2 &
terr=$!
on_signal() {
  trap - INT TERM HUP
  kill -TERM $qpid 2>/dev/null; wait $qpid 2>/dev/null
  kill $tout $terr 2>/dev/null
  msg "interrupted; guest killed"
  [ "$own_scratch" = 1 ] && [ "$keep" = 0 ] && rm -rf "$scratch"
  exit 130
}
trap on_signal INT TERM HUP
wait $qpid
qrc=$?
wait $tout $terr 2>/dev/null
trap - INT TERM HUP
t1=$(date +%s.%N)

# --- result ----------------------------------------------------------------------
klog=$v/dmesg.log
[ -s "$klog" ] || klog=$v/console.log
kernel_tail() {
  echo "----- wsblk-vm: last lines of the guest kernel log ($klog) -----" >&2
  tail -n "${1:-40}" "$klog" 2>/dev/null | tr -d '\r' >&2
  echo "-----" >&2
}
rc=
if [ -f "$v/exit-code" ]; then rc=$(cat "$v/exit-code"); fi
if [[ ! $rc =~ ^[0-9]+$ ]]; then
  if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
    msg "TIMEOUT: the guest did not finish within ${timeout}s and was killed"
    rc=124
  else
    if grep -q 'Kernel panic' "$v/console.log" 2>/dev/null; then
      msg "the guest kernel panicked before the command finished"
    else
      msg "the guest stopped before the command finished (qemu exit status $qrc)"
    fi
    [ -s "$v/init-error" ] && msg "init: $(cat "$v/init-error")"
    [ -s "$v/qemu.log" ] && { echo "----- qemu.log -----" >&2; tail -n 20 "$v/qemu.log" >&2; }
    rc=125
  fi
  kernel_tail 60
  keep=1
else
  if grep -q -E 'WARNING:|BUG:|Oops|Call Trace|general protection fault|Kernel panic|blocked for more than' "$klog" 2>/dev/null; then
    msg "the guest kernel logged warnings or errors; see $klog"
    keep=1
  fi
  if [ "$rc" != 0 ] && [ "$quiet" = 0 ]; then
    # only what the kernel said while the command ran
    since=$(cat "$v/t-start" 2>/dev/null || echo 0)
    awk -v t="$since" 'match($0, /^\[ *[0-9]+\.[0-9]+\]/) { ts = substr($0, 2, RLENGTH - 2) + 0; if (ts >= t) print }' \
      "$v/dmesg.log" 2>/dev/null | tail -n 40 >"$v/dmesg-command.log"
    if [ -s "$v/dmesg-command.log" ]; then
      echo "----- wsblk-vm: guest kernel messages while the command ran (last 40) -----" >&2
      cat "$v/dmesg-command.log" >&2
      echo "-----" >&2
    fi
  fi
fi

boot=$(cat "$v/t-start" 2>/dev/null || echo '?')
run=$(awk -v a="$(cat "$v/t-start" 2>/dev/null)" -v b="$(cat "$v/t-end" 2>/dev/null)" 'BEGIN{ if (a != "" && b != "") printf "%.1f", b - a; else printf "?" }')
total=$(awk -v a="$t0" -v b="$t1" 'BEGIN{ printf "%.1f", b - a }')
echo "boot=$boot command=$run total=$total exit=$rc" >"$v/times"
[ "$verbose" = 1 ] && msg "guest boot ${boot}s (uptime at command start), command ${run}s, total ${total}s, exit $rc"

if [ "$own_scratch" = 1 ]; then
  if [ "$keep" = 1 ]; then msg "scratch dir: $scratch"; else rm -rf "$scratch"; fi
fi
exit "$rc"
