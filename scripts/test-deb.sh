#!/usr/bin/env bash
# Installs the release .deb on this machine and uses it as a user would (docs/release.md):
#
#   scripts/test-deb.sh [PACKAGE.deb]      (default: target/release-check/a/dist/ccmount_*.deb)
#
# dpkg -i; `ccmount --version` says which release; the man page, completions, units, config
# and the mount.ccmount helper link are where Debian tools look; a tree encrypted by the
# installed ccmount is mounted with `mount -t fuse.ccmount` (mount.fuse3 runs ccmount) and
# `mount -t ccmount` (/usr/sbin/mount.ccmount) and read back; `dpkg -r` leaves only the
# config file, `dpkg --purge` leaves nothing. Needs root and dpkg; skips (exit 0) otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf 'test-deb: %s\n' "$*" >&2; }
fail() { say "FAIL: $*"; exit 1; }

deb=${1:-$(find target/release-check/a/dist -maxdepth 1 -name 'ccmount_*.deb' 2>/dev/null | head -n1 || true)}
if [ -z "$deb" ] || [ ! -f "$deb" ]; then
  git rev-parse --verify -q HEAD >/dev/null 2>&1 ||
    { say "SKIP: no package (not a git checkout: scripts/check-reproducible.sh built none)"; exit 0; }
  fail "no package (run scripts/check-reproducible.sh first)"
fi
[ "$(id -u)" -eq 0 ] || { say "SKIP: not root (dpkg -i needs it)"; exit 0; }
command -v dpkg >/dev/null || { say "SKIP: no dpkg on this machine"; exit 0; }
[ -e /dev/fuse ] || { say "SKIP: no /dev/fuse"; exit 0; }

if dpkg -s ccmount >/dev/null 2>&1 || [ -e /etc/ccmount/ccmount.toml ]; then
  say "SKIP: ccmount is already installed or /etc/ccmount/ccmount.toml exists here (not touching them)"
  exit 0
fi

work=$(mktemp -d /tmp/ccmount-deb-test.XXXXXX)
cleanup() {
  if mountpoint -q "$work/mnt" 2>/dev/null; then umount "$work/mnt" 2>/dev/null || true; fi
  dpkg --purge ccmount >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

dpkg -i "$deb" >/dev/null || fail "dpkg -i $deb"
dpkg -L ccmount | sort >"$work/files"
say "installed $(basename "$deb"): $(wc -l <"$work/files") paths"
v=$(/usr/bin/ccmount --version)
grep -q 'reproducible release' <<<"$v" || fail "ccmount --version: $v"
say "ok: $v"
for f in /usr/bin/ccmount /usr/share/man/man1/ccmount.1.gz \
  /usr/share/bash-completion/completions/ccmount /usr/share/zsh/vendor-completions/_ccmount \
  /usr/share/fish/vendor_completions.d/ccmount.fish /usr/lib/systemd/system/ccmount@.service \
  /usr/lib/systemd/system/ccmount-secrets.service /etc/ccmount/ccmount.toml \
  /usr/share/doc/ccmount/README.md /usr/share/doc/ccmount/deploy/host.md; do
  [ -e "$f" ] || fail "$f is not installed"
done
[ "$(readlink /usr/sbin/mount.ccmount)" = ../bin/ccmount ] || fail "/usr/sbin/mount.ccmount is not a link to ../bin/ccmount"
grep -q '^ExecStart=/usr/bin/ccmount ' /usr/lib/systemd/system/ccmount-secrets.service ||
  fail "the packaged unit does not run /usr/bin/ccmount"
zcat /usr/share/man/man1/ccmount.1.gz | grep -q '^\.TH ccmount' || fail "the man page is not roff"
say "ok: man page, completions (bash, zsh, fish), units, config, docs, mount.ccmount link"

mkdir -p "$work/plain/sub" "$work/mnt"
head -c 3000000 /dev/urandom >"$work/plain/model.bin"
echo '{"a": 1}' >"$work/plain/sub/config.json"
printf 'deb-test-password\n' >"$work/pass"
chmod 600 "$work/pass"
ccmount encrypt -q --passfile "$work/pass" "$work/plain" "$work/cipher"
for type in fuse.ccmount ccmount; do
  timeout 60 mount -t "$type" "$work/cipher" "$work/mnt" -o "ro,nosuid,nodev,passfile=$work/pass" ||
    fail "mount -t $type"
  cmp "$work/plain/model.bin" "$work/mnt/model.bin" || fail "mount -t $type: model.bin differs"
  cmp "$work/plain/sub/config.json" "$work/mnt/sub/config.json" || fail "mount -t $type: config.json differs"
  timeout 30 umount "$work/mnt" || fail "umount after mount -t $type"
  say "ok: mount -t $type $work/cipher (the installed ccmount), files read back, umount"
done

dpkg -r ccmount >/dev/null || fail "dpkg -r ccmount"
left=()
while read -r p; do
  [ -d "$p" ] && continue # shared directories (/usr/bin, ...) stay
  [ -e "$p" ] || [ -L "$p" ] || continue
  left+=("$p")
done <"$work/files"
[ "${left[*]}" = /etc/ccmount/ccmount.toml ] || fail "after dpkg -r, left behind: ${left[*]:-nothing} (want only /etc/ccmount/ccmount.toml)"
dpkg --purge ccmount >/dev/null || fail "dpkg --purge ccmount"
[ ! -e /etc/ccmount/ccmount.toml ] || fail "dpkg --purge left /etc/ccmount/ccmount.toml"
say "ok: dpkg -r leaves only the config file; dpkg --purge removes it"
