#!/usr/bin/env bash
# The reproducible release build (docs/release.md).
#
#   scripts/release.sh [--out DIR] [--no-image] [--allow-dirty]
#
# Builds, from the committed tree, into DIR (default dist/):
#   ccmount-VERSION-x86_64-linux-gnu          the release binary (production features, the
#                                             dependency list embedded by cargo-auditable)
#   ccmount-VERSION-x86_64-linux-gnu.cdx.json its CycloneDX SBOM (cargo-cyclonedx)
#   ccmount_VERSION-1_amd64.deb               the Debian package (cargo-deb)
#   ccmount_VERSION-1_amd64.deb.cdx.json      the SBOM of what the package ships
#   image.txt                                 the container image's ID (config digest) and
#                                             layer digest (podman, FROM scratch), unless
#                                             --no-image or no podman/buildah
#   SHA256SUMS                                sha256 of every artifact above
# Two runs from the same commit in different directories, at different times, as different
# users give the same bytes: paths are remapped, SOURCE_DATE_EPOCH is the commit's time,
# dependencies come from Cargo.lock, the build directory is private to this run
# (target/reproducible), and nothing reads the clock, the host name or the user.
# The pinned tools (cargo-auditable, cargo-cyclonedx, cargo-deb) are installed with
# `cargo install --locked` when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

out=dist
image=1
allow_dirty=0
while (($#)); do
  case $1 in
    --out) out=${2:?--out needs a directory}; shift ;;
    --no-image) image=0 ;;
    --allow-dirty) allow_dirty=1 ;;
    -h | --help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "release: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
say() { printf 'release: %s\n' "$*" >&2; }

# --- tools ---------------------------------------------------------------------------------
need_tool() { # NAME VERSION CHECK-COMMAND...
  local name=$1 version=$2; shift 2
  if "$@" >/dev/null 2>&1; then return 0; fi
  say "installing $name $version (cargo install --locked)"
  cargo install --locked --quiet "$name" --version "$version"
}
need_tool cargo-auditable 0.7.7 cargo auditable --version
need_tool cargo-cyclonedx 0.5.9 cargo cyclonedx --version
need_tool cargo-deb 3.8.0 cargo deb --version

# --- inputs --------------------------------------------------------------------------------
commit=$(git rev-parse HEAD)
if ((!allow_dirty)) && [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  say "the tree has uncommitted changes: a release is built from a commit (or --allow-dirty)"
  exit 2
fi
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)
export SOURCE_DATE_EPOCH
export CCMOUNT_COMMIT=$commit CCMOUNT_BUILD=reproducible
export TZ=UTC LC_ALL=C.UTF-8
umask 022
cargo_home=${CARGO_HOME:-$HOME/.cargo}
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
target=$root/target/reproducible
export CARGO_TARGET_DIR=$target
# Every path that could reach the binary is mapped to a fixed one: this tree, the registry
# sources, the toolchain, the build directory (generated code, C objects of aws-lc-sys).
remap="--remap-path-prefix=$target=/build/target --remap-path-prefix=$root=/build/ccmount"
remap+=" --remap-path-prefix=$cargo_home=/cargo --remap-path-prefix=$rustup_home=/rustup"
export RUSTFLAGS="$remap -C strip=debuginfo"
cmap="-ffile-prefix-map=$target=/build/target -ffile-prefix-map=$root=/build/ccmount"
cmap+=" -ffile-prefix-map=$cargo_home=/cargo"
export CFLAGS="${CFLAGS:-} $cmap" CXXFLAGS="${CXXFLAGS:-} $cmap"
version=$(cargo metadata --no-deps --format-version 1 --locked |
  python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="ccmount"))')
say "ccmount $version at $commit (SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH), $(rustc -V)"

# --- the binary ----------------------------------------------------------------------------
say "cargo auditable build --release --locked -p ccmount --no-default-features --features production"
cargo auditable build --release --locked --quiet -p ccmount --no-default-features --features production
bin=$target/release/ccmount
"$bin" --version | grep -q "commit ${commit:0:12}, reproducible release" ||
  { say "the binary does not say it is this release: $("$bin" --version)"; exit 1; }

mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out"/ccmount* "$out"/image.txt "$out"/SHA256SUMS
stem=ccmount-$version-x86_64-linux-gnu
cp "$bin" "$out/$stem"

# --- SBOM ----------------------------------------------------------------------------------
# cargo-cyclonedx stamps a random serial number and the time: both are made deterministic
# (the serial from the commit, the time from SOURCE_DATE_EPOCH).
sbom() { # OUT
  local tmp=$target/sbom
  rm -rf "$tmp"; mkdir -p "$tmp"
  (cd agent && cargo cyclonedx --quiet --format json --spec-version 1.5 \
    --no-default-features --features production --target x86_64-unknown-linux-gnu \
    --override-filename ccmount-sbom >/dev/null)
  python3 scripts/release/normalize_sbom.py agent/ccmount-sbom.json "$commit" "$SOURCE_DATE_EPOCH" "$1"
  rm -f agent/ccmount-sbom.json
}
sbom "$out/$stem.cdx.json"

# --- Debian package ------------------------------------------------------------------------
assets=$root/target/deb-assets
rm -rf "$assets"
mkdir -p "$assets/completions" "$assets/systemd"
"$bin" man | gzip -9n >"$assets/ccmount.1.gz"
"$bin" completions bash >"$assets/completions/ccmount"
"$bin" completions zsh >"$assets/completions/_ccmount"
"$bin" completions fish >"$assets/completions/ccmount.fish"
for u in docs/deploy/host/ccmount@.service docs/deploy/host/ccmount-secrets.service; do
  sed 's|/usr/local/|/usr/|g' "$u" >"$assets/systemd/$(basename "$u")"
done
# `mount -t ccmount SRC MNT -o OPTS` runs /usr/sbin/mount.ccmount (the helper form).
ln -s ../bin/ccmount "$assets/mount.ccmount"
find "$assets" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
say "cargo deb -p ccmount --no-build"
deb=$(cargo deb -p ccmount --no-build --no-strip --locked --output "$out" 2>/dev/null | tail -n1)
[ -f "$deb" ] || { say "cargo deb produced no package"; exit 1; }
cp "$out/$stem.cdx.json" "$deb.cdx.json"

# --- image ---------------------------------------------------------------------------------
if ((image)); then
  if command -v podman >/dev/null 2>&1 || command -v buildah >/dev/null 2>&1 || [ "$(id -u)" -eq 0 ]; then
    CCMOUNT_IMAGE=localhost/ccmount:$version scripts/build-image.sh --no-cargo
    if command -v podman >/dev/null 2>&1; then
      {
        echo "image localhost/ccmount:$version"
        echo "id $(podman image inspect --format '{{.Id}}' "localhost/ccmount:$version")"
        echo "layers $(podman image inspect --format '{{range .RootFS.Layers}}{{.}} {{end}}' "localhost/ccmount:$version")"
      } >"$out/image.txt"
    fi
  else
    say "no podman or buildah and not root: no image"
  fi
fi

(cd "$out" && sha256sum -- * | grep -v ' SHA256SUMS$' >SHA256SUMS)
say "artifacts in $out:"
sed 's/^/  /' "$out/SHA256SUMS" >&2
