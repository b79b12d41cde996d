#!/usr/bin/env bash
# The Python package (issue 20, docs/python.md): builds the wheel with maturin, installs it
# with `pip install ./python` into a venv under target/, and runs python/tests with pytest
# against the `ccmount` and `test-kbs` binaries of this checkout. Called by scripts/test.sh
# after the Rust tests; runs on its own too.
#
# Also holds the python crate (excluded from the workspace, python/Cargo.toml says why) to
# the workspace's gates: cargo fmt, clippy -D warnings, its own Cargo.lock (--locked).
#
#   scripts/test-python.sh [--install-only]   (--install-only: venv + wheel, no checks; the
#                                              bench suite tests/bench/suites/python.sh uses it)
set -euo pipefail
install_only=0
[ "${1:-}" = "--install-only" ] && install_only=1
cd "$(dirname "$0")/.."

target_dir=$(realpath -m "${CARGO_TARGET_DIR:-target}")
venv=$target_dir/python-venv
reqs=python/requirements-test.txt
say() { printf '  %s\n' "$*" >&2; }

# 1. A venv with the pinned tools (rebuilt when the pins change).
stamp=$venv/.requirements.sha256
want=$(sha256sum "$reqs" | cut -d' ' -f1)
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  say "venv $venv is up to date"
else
  rm -rf "$venv"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    [ "$(id -u)" -eq 0 ] || { say "python3 -m venv failed and not root: apt-get install python3-venv"; exit 1; }
    DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$venv"
  fi
  timeout 600 "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$reqs"
  echo "$want" >"$stamp"
  say "installed the pinned test tools into $venv"
fi
export PATH="$venv/bin:$PATH"

if ((install_only)); then
  CARGO_TARGET_DIR=$target_dir/python timeout 900 "$venv/bin/python" -m pip install \
    --disable-pip-version-check -q --no-build-isolation --no-deps --force-reinstall ./python
  say "installed ccmount into $venv"
  exit 0
fi

# 2. The crate's own gates (its lock must be current: CI never updates it).
cargo fmt --manifest-path python/Cargo.toml --check
cargo metadata --locked --format-version 1 --manifest-path python/Cargo.toml >/dev/null

# 3. The binaries the tests drive: the ones `cargo nextest run --workspace` just built (in CI,
# scripts/test.sh runs it first; rebuilding them in the dev profile would only churn), else
# built here.
export CCMOUNT_BIN=$target_dir/debug/ccmount TEST_KBS_BIN=$target_dir/debug/test-kbs
if [ -x "$CCMOUNT_BIN" ] && [ -x "$TEST_KBS_BIN" ]; then
  say "using $CCMOUNT_BIN and $TEST_KBS_BIN ($(date -r "$CCMOUNT_BIN" -u +%FT%TZ))"
else
  cargo build --locked -q -p ccmount -p test-kbs
fi

# 4. The wheel, the way a user installs it. --no-build-isolation: the pinned maturin of the
# venv builds it (no second download); the release build lives in target/python.
export CARGO_TARGET_DIR=$target_dir/python
timeout 900 "$venv/bin/python" -m pip install --disable-pip-version-check -q \
  --no-build-isolation --no-deps --force-reinstall ./python
say "installed $("$venv/bin/python" -c 'import ccmount; print("ccmount", ccmount.__version__, ccmount._native.BACKEND)')"
# clippy in the release profile shares the wheel build's build-script outputs (aws-lc's C).
cargo clippy --release --locked -q --manifest-path python/Cargo.toml --all-targets -- -D warnings

# 5. The tests, from outside the source tree so that `import ccmount` is the installed wheel.
cd "$target_dir"
timeout 900 "$venv/bin/python" -m pytest -q -rs -p no:cacheprovider "$OLDPWD/python/tests"
