#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script).
# On a fresh machine it first installs what it needs (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

step "setup"
scripts/setup.sh

step "format"
cargo fmt --all --check

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests"
cargo nextest run --workspace --locked --no-fail-fast

step "doc tests"
cargo test --workspace --doc --locked

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

step "python package: wheel (maturin), pip install ./python, pytest"
scripts/test-python.sh # issue 20; python/ is outside the workspace (python/Cargo.toml)

scripts/test-deploy.sh # deploy: image, Kubernetes manifests, host units, CI workflow (issue 7)

step "release: two reproducible builds compared, SBOMs, the Debian package installed"
scripts/check-reproducible.sh
scripts/test-deb.sh
step "all checks passed"
