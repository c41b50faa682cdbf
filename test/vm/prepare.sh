#!/usr/bin/env bash
# Prepares (once) what test/vm/run.sh boots: Debian trixie's kernel (which has
# ublk_drv) and a busybox initramfs holding that kernel's 9p/ublk/nbd/ext4/loop
# modules plus test/vm/init.sh. Everything lands in a cache directory outside the
# repository, ${WSBLK_VM_CACHE:-/var/cache/wsblk-vm}; a second run does nothing
# (the initramfs alone is rebuilt when init.sh or the module list changed).
#
#   bash test/vm/prepare.sh            prepare if needed
#   bash test/vm/prepare.sh --refresh  fetch the newest trixie kernel again
#   bash test/vm/prepare.sh --quiet    print nothing when already prepared (run.sh uses this)
#
# The system's apt state is never touched: a private sources list (trixie main on
# the mirror the system's own sources use), private lists and cache directories.
# Needs: apt-get, dpkg-deb, xz, cpio, gzip, busybox-static, qemu-system-x86_64, and
# the Debian archive keyring (/usr/share/keyrings/debian-archive-keyring.gpg; on
# non-Debian hosts: package debian-archive-keyring, or WSBLK_VM_KEYRING).
# Env: WSBLK_VM_CACHE (cache dir), WSBLK_VM_MIRROR (Debian mirror URL),
#      WSBLK_VM_MODULES (space-separated module names loaded besides the 9p ones;
#        default "ublk_drv nbd loop ext4 raid1"; dependencies are added),
#      WSBLK_VM_KERNEL_PKG (exact linux-image package to use).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${WSBLK_VM_CACHE:-/var/cache/wsblk-vm}
# The 9p stack is always there (the guest's root is a 9p share); the rest can change.
modules_wanted="netfs 9pnet 9pnet_virtio 9p ${WSBLK_VM_MODULES:-ublk_drv nbd loop ext4 raid1}"
refresh=0 quiet=0
for a in "$@"; do
  case $a in
    --refresh) refresh=1 ;;
    --quiet|-q) quiet=1 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "prepare.sh: unknown argument: $a" >&2; exit 2 ;;
  esac
done

say() { echo "wsblk-vm prepare: $*" >&2; }
die() { echo "wsblk-vm prepare: error: $*" >&2; exit 1; }

# --- tools -----------------------------------------------------------------
missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$1 (Debian package $2)"); }
need apt-get apt; need apt-cache apt; need dpkg-deb dpkg; need xz xz-utils; need cpio cpio
need gzip gzip; need qemu-system-x86_64 qemu-system-x86; need flock util-linux; need sha256sum coreutils
busybox=
for b in /bin/busybox /usr/bin/busybox; do
  [ -x "$b" ] || continue
  case $(LC_ALL=C ldd "$b" 2>&1 || true) in *'not a dynamic'*|*'statically linked'*) busybox=$b; break ;; esac
done
[ -n "$busybox" ] || missing+=("a static busybox at /bin/busybox (Debian package busybox-static)")
if [ ${#missing[@]} -gt 0 ]; then
  echo "wsblk-vm prepare: error: missing tools:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  echo "  install with: apt-get install -y qemu-system-x86 busybox-static cpio xz-utils" >&2
  exit 1
fi

mkdir -p "$cache" || die "cannot create cache dir $cache (set WSBLK_VM_CACHE)"
exec 9>"$cache/.lock"
flock 9 # parallel runs wait for one another

# The initramfs depends on init.sh, this script and the module list.
initrd_key=$( { cat "$here/init.sh" "${BASH_SOURCE[0]}"; echo "$modules_wanted"; } | sha256sum | cut -c1-16)

if [ "$refresh" = 0 ] && [ -f "$cache/vm.env" ]; then
  # shellcheck disable=SC1091
  . "$cache/vm.env"
  if [ "${WSBLK_VM_INITRD_KEY:-}" = "$initrd_key" ] && [ -f "${WSBLK_VM_KERNEL:-}" ] && [ -f "${WSBLK_VM_INITRD:-}" ]; then
    [ "$quiet" = 1 ] || say "up to date: kernel $WSBLK_VM_KVER in $cache"
    exit 0
  fi
fi

# --- kernel package, through a private apt state ----------------------------
mirror=${WSBLK_VM_MIRROR:-}
if [ -z "$mirror" ]; then
  # The first Debian archive URI of the system's sources (not -security, not third party).
  mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
    grep -v '^[[:space:]]*#' | grep -o -E '(https?|mirror\+https?)://[^][ ]+' |
    grep -E '/debian/?$' | grep -v -e security -e debug | head -n1 || true)
  mirror=${mirror:-http://deb.debian.org/debian}
fi
mirror=${mirror%/}
apt_dir=$cache/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$cache/debs"
keyring=${WSBLK_VM_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}
echo "deb [signed-by=$keyring] $mirror trixie main" >"$apt_dir/sources.list"
: >"$apt_dir/status"
apt_opts=(
  -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
  -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::State::status=$apt_dir/status"
  -o "Dir::Cache=$apt_dir/cache" -o APT::Architecture=amd64 -o APT::Architectures=amd64
  -o Acquire::Languages=none -o APT::Sandbox::User=root -o APT::Default-Release=
)
pkg=${WSBLK_VM_KERNEL_PKG:-}
if [ -z "$pkg" ] && [ "$refresh" = 0 ] && [ -f "$cache/kernel.pkg" ]; then pkg=$(cat "$cache/kernel.pkg"); fi
deb=
if [ -z "$pkg" ] || [ ! -f "$cache/kernel-${pkg#linux-image-}/.done" ]; then
  updated=0
  apt_update() {
    say "apt-get update (trixie main from $mirror, private state in $apt_dir)"
    apt-get -q "${apt_opts[@]}" update >"$apt_dir/update.log" 2>&1 ||
      { cat "$apt_dir/update.log" >&2; die "apt-get update for trixie failed (mirror $mirror; set WSBLK_VM_MIRROR)"; }
    updated=1
  }
  newest_pkg() {
    pkg=$(apt-cache "${apt_opts[@]}" depends linux-image-amd64 2>/dev/null |
      sed -n 's/^[[:space:]]*Depends:[[:space:]]*\(linux-image-[0-9][^[:space:]]*\).*/\1/p' | head -n1)
    [ -n "$pkg" ] || die "cannot find the versioned package behind linux-image-amd64 in trixie"
  }
  download() {
    say "downloading $pkg"
    rm -f "$cache/debs/"*.deb
    (cd "$cache/debs" && apt-get -q "${apt_opts[@]}" download "$pkg" >"$apt_dir/download.log" 2>&1)
  }
  [ -f "$keyring" ] || die "no Debian archive keyring at $keyring (apt-get install debian-archive-keyring; it must know trixie's keys)"
  if [ "$refresh" = 1 ] || ! ls "$apt_dir/lists/"*_Packages* >/dev/null 2>&1; then apt_update; fi
  [ -n "$pkg" ] || newest_pkg
  if ! download; then
    [ "$updated" = 1 ] && { cat "$apt_dir/download.log" >&2; die "apt-get download $pkg failed"; }
    apt_update # stale lists: the package may have gone from the mirror
    [ -n "${WSBLK_VM_KERNEL_PKG:-}" ] || newest_pkg
    download || { cat "$apt_dir/download.log" >&2; die "apt-get download $pkg failed"; }
  fi
  deb=$(ls "$cache/debs/${pkg}_"*.deb | head -n1)
  echo "$pkg" >"$cache/kernel.pkg"
fi

# --- kernel and modules -------------------------------------------------------
kver=${pkg#linux-image-}
kdir=$cache/kernel-$kver
if [ ! -f "$kdir/.done" ]; then
  say "extracting $(basename "$deb")"
  rm -rf "$kdir" "$kdir.tmp"
  mkdir -p "$kdir.tmp/x"
  dpkg-deb -x "$deb" "$kdir.tmp/x"
  mdir=
  for d in "$kdir.tmp/x/usr/lib/modules/$kver" "$kdir.tmp/x/lib/modules/$kver"; do [ -d "$d" ] && { mdir=$d; break; }; done
  [ -n "$mdir" ] || die "no lib/modules/$kver in $deb"
  cp "$kdir.tmp/x/boot/vmlinuz-$kver" "$kdir.tmp/vmlinuz"
  cp "$kdir.tmp/x/boot/config-$kver" "$kdir.tmp/config"
  # Keep the whole (compressed) module tree: cheap, and lets WSBLK_VM_MODULES grow
  # without downloading again.
  mv "$mdir" "$kdir.tmp/modules"
  rm -rf "$kdir.tmp/x"
  touch "$kdir.tmp/.done"
  mv "$kdir.tmp" "$kdir"
  # old kernels go
  find "$cache" -maxdepth 1 -type d -name 'kernel-[0-9]*' ! -name "kernel-$kver" -exec rm -rf {} +
fi
rm -f "$cache/debs/"*.deb # extracted: the .deb is no longer needed

# --- module closure (no kmod needed: read .modinfo of the .ko files) ----------
declare -A modpath=() seen=()
while IFS= read -r f; do
  n=$(basename "$f"); n=${n%%.ko*}; modpath[${n//-/_}]=$f
done < <(find "$kdir/modules/kernel" -name '*.ko*')
builtin_list=$kdir/modules/modules.builtin
modinfo_field() { xz -dcf <"$1" | tr '\0' '\n' | grep -a "^$2=" | sed "s/^$2=//" || true; }
order=()
resolve() { # resolve NAME REQUIRED
  local n=${1//-/_} req=$2 f d alias_hits=()
  [ -n "${seen[$n]:-}" ] && return 0
  seen[$n]=1
  f=${modpath[$n]:-}
  if [ -z "$f" ]; then
    if grep -q -E "/${n//_/[-_]}\.ko\$" "$builtin_list" 2>/dev/null; then return 0; fi # built in
    # an alias (softdeps name e.g. crypto-crc32c): look in crypto/lib dirs
    while IFS= read -r g; do
      # (no grep -q: with pipefail, an early exit would be read as "no match")
      if xz -dcf <"$g" | tr '\0' '\n' | grep -a -x "alias=$1" >/dev/null; then alias_hits+=("$g"); fi
    done < <(find "$kdir/modules/kernel/crypto" "$kdir/modules/kernel/arch" "$kdir/modules/kernel/lib" -name '*.ko*' 2>/dev/null)
    if [ ${#alias_hits[@]} -eq 0 ]; then
      [ "$req" = 1 ] && die "module $1 is neither a module nor built into $kver"
      say "note: soft dependency $1 not found, skipped"; return 0
    fi
    for g in "${alias_hits[@]}"; do d=$(basename "$g"); resolve "${d%%.ko*}" 0; done
    return 0
  fi
  for d in $(modinfo_field "$f" softdep | sed 's/post:.*//; s/pre://'); do resolve "$d" 0; done
  for d in $(modinfo_field "$f" depends | tr ',' ' '); do resolve "$d" 1; done
  order+=("$n")
}
for m in $modules_wanted; do resolve "$m" 1; done

# --- initramfs ---------------------------------------------------------------
say "building initramfs (modules: ${order[*]})"
root=$cache/initramfs.tmp
rm -rf "$root"
mkdir -p "$root"/{bin,dev,proc,sys,root,scratch,lib/modules,tmp}
cp "$busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
cp "$here/init.sh" "$root/init"
chmod 755 "$root/init"
for n in "${order[@]}"; do
  xz -dcf <"${modpath[$n]}" >"$root/lib/modules/$n.ko"
  echo "$n" >>"$root/lib/modules/order"
done
echo "$kver" >"$root/kver"
initrd=$cache/initrd-$kver.gz
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 | gzip -6) >"$initrd.tmp"
mv "$initrd.tmp" "$initrd"
rm -rf "$root"
find "$cache" -maxdepth 1 -name 'initrd-*.gz' ! -name "initrd-$kver.gz" -delete

cat >"$cache/vm.env.tmp" <<EOF
WSBLK_VM_KVER='$kver'
WSBLK_VM_KERNEL='$kdir/vmlinuz'
WSBLK_VM_INITRD='$initrd'
WSBLK_VM_INITRD_KEY='$initrd_key'
WSBLK_VM_MODULES_LOADED='${order[*]}'
EOF
mv "$cache/vm.env.tmp" "$cache/vm.env"
say "ready: kernel $kver, $(du -h "$initrd" | cut -f1) initramfs, cache $cache"
