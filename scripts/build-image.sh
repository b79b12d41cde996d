#!/usr/bin/env bash
# Builds the ccmount container image offline (docs/deploy/image.md).
#
#   scripts/build-image.sh [--no-cargo] [--stage-only] [--tag TAG]
#
# 1. cargo build --release -p ccmount (skipped with --no-cargo: uses the existing binary);
# 2. stages target/image/: the Containerfile and rootfs/ (ccmount, the ccmount-ready probe,
#    every shared library ldd names plus the dynamic loader, /etc/passwd and /etc/group with a
#    non-root user 65532, the CA bundle, an empty /tmp);
# 3. builds the image FROM scratch with podman (or buildah), installing podman with apt-get
#    when it is missing and we are root (set CCMOUNT_IMAGE_NO_INSTALL=1 to forbid that).
# Without podman or buildah it stops after staging, says so, and exits 3.
# The tag defaults to $CCMOUNT_IMAGE or localhost/ccmount:dev.
set -euo pipefail
cd "$(dirname "$0")/.."

tag=${CCMOUNT_IMAGE:-localhost/ccmount:dev}
cargo_build=1
stage_only=0
while (($#)); do
  case $1 in
    --no-cargo) cargo_build=0 ;;
    --stage-only) stage_only=1 ;;
    --tag) tag=${2:?--tag needs a value}; shift ;;
    -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "build-image: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

say() { printf 'build-image: %s\n' "$*" >&2; }

target_dir=${CARGO_TARGET_DIR:-target}
bin=$target_dir/release/ccmount
if ((cargo_build)); then
  # The production feature set: no `demo` (it links the test KBS).
  say "cargo build --release -p ccmount --no-default-features --features production"
  cargo build --release -p ccmount --locked --quiet --no-default-features --features production
fi
[ -x "$bin" ] || { say "no release binary at $bin (run without --no-cargo)"; exit 1; }

stage=$target_dir/image
rootfs=$stage/rootfs
rm -rf "$stage"
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp"
cp deploy/Containerfile "$stage/Containerfile"

# Debug sections only help perf on the build machine; symbols stay for backtraces.
objcopy --strip-debug "$bin" "$rootfs/usr/local/bin/ccmount"
chmod 0755 "$rootfs/usr/local/bin/ccmount"
say "compiling the ccmount-ready probe (rustc, std only)"
rustc --edition 2024 -O -C strip=symbols -o "$rootfs/usr/local/bin/ccmount-ready" \
  deploy/ccmount-ready.rs

# Copy every library the two binaries load, at the path ldd reports, plus the loader.
copy_libs() {
  local exe=$1 out lib
  out=$(ldd "$exe" 2>&1) || true
  if grep -q 'not found' <<<"$out"; then
    say "ldd $exe: missing libraries:"; grep 'not found' <<<"$out" >&2; exit 1
  fi
  if grep -qE 'not a dynamic executable|statically linked' <<<"$out"; then return 0; fi
  while read -r lib; do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
  done < <(grep -oE '/[^ ]+' <<<"$out")
}
copy_libs "$rootfs/usr/local/bin/ccmount"
copy_libs "$rootfs/usr/local/bin/ccmount-ready"

cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
ccmount:x:65532:65532:ccmount:/nonexistent:/sbin/nologin
EOF
cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
ccmount:x:65532:
EOF
if [ -r /etc/ssl/certs/ca-certificates.crt ]; then
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
else
  say "warning: no /etc/ssl/certs/ca-certificates.crt here (apt-get install ca-certificates);"
  say "         the image will trust only a CA given with --kbs-cert"
fi

# What went in, for the log and for review.
(cd "$rootfs" && find . -type f -printf '%m %s %p\n' | sort -k3) >"$stage/rootfs.txt"
say "staged $(wc -l <"$stage/rootfs.txt") files, $(du -sh "$rootfs" | cut -f1) in $rootfs:"
sed 's/^/  /' "$stage/rootfs.txt" >&2

if ((stage_only)); then say "--stage-only: not building an image"; exit 0; fi

if ! command -v podman >/dev/null 2>&1 && ! command -v buildah >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && [ -z "${CCMOUNT_IMAGE_NO_INSTALL:-}" ] && command -v apt-get >/dev/null; then
    say "installing podman (apt-get; only this step needs it)"
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update -qq || true
    timeout 600 apt-get install -y -qq podman >/dev/null || say "apt-get install podman failed"
  fi
fi

version=$("$bin" --version | awk '{print $2}')
if command -v podman >/dev/null 2>&1; then
  say "podman build -t $tag (offline, FROM scratch)"
  timeout 300 podman build --quiet --network=none --pull=never --timestamp 0 \
    --build-arg "VERSION=$version" -t "$tag" -f "$stage/Containerfile" "$stage" >/dev/null
elif command -v buildah >/dev/null 2>&1; then
  say "buildah bud -t $tag (offline, FROM scratch)"
  timeout 300 buildah bud --quiet --network=none --pull-never --timestamp 0 \
    --build-arg "VERSION=$version" -t "$tag" -f "$stage/Containerfile" "$stage" >/dev/null
else
  say "neither podman nor buildah is available: staged $rootfs only"
  exit 3
fi
say "built $tag (ccmount $version)"
