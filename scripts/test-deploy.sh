#!/usr/bin/env bash
# Deployment checks (issue 7): container image, Kubernetes manifests, host units, CI workflow,
# the verify --json schema. Called by scripts/test.sh; runs on its own too:
#
#   scripts/test-deploy.sh [--no-image]
#
# Python tools live in target/deploy-venv (pinned: scripts/deploy-requirements.txt). Every
# check prints what it validated; a check that cannot run here prints SKIP and the reason.
# All checks run even after a failure; the exit status is 1 if any failed.
set -euo pipefail
cd "$(dirname "$0")/.."

no_image=0
[ "${1:-}" = "--no-image" ] && no_image=1

target_dir=${CARGO_TARGET_DIR:-target}
venv=$target_dir/deploy-venv
py=$venv/bin/python
bin=$target_dir/release/ccmount
corpus=tests/fixtures/gocryptfs-2.3
schema=docs/schemas/verify-report.schema.json
work=$(mktemp -d /tmp/ccmount-deploy-test.XXXXXX)
trap 'rm -rf "$work"' EXIT

passed=0 failed=0 skipped=0
failed_names=()
say() { printf '  %s\n' "$*" >&2; }
skip() { say "SKIP: $*"; exit 77; }

# check NAME FUNCTION: runs FUNCTION in a subshell with errexit; 77 means skipped.
check() {
  local name=$1 rc t0=$SECONDS
  printf '\n--> deploy: %s\n' "$name" >&2
  set +e
  (set -euo pipefail; "$2")
  rc=$?
  set -e
  if ((rc == 0)); then
    passed=$((passed + 1)); printf '<-- ok: %s (%ss)\n' "$name" $((SECONDS - t0)) >&2
  elif ((rc == 77)); then
    skipped=$((skipped + 1)); printf '<-- skipped: %s\n' "$name" >&2
  else
    failed=$((failed + 1)); failed_names+=("$name"); printf '<-- FAILED: %s (exit %s)\n' "$name" "$rc" >&2
  fi
}

# --- tools --------------------------------------------------------------------------------
setup_venv() {
  local stamp=$venv/.requirements.sha256 want
  want=$(sha256sum scripts/deploy-requirements.txt | cut -d' ' -f1)
  if [ -x "$py" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    say "venv $venv is up to date"
    return 0
  fi
  rm -rf "$venv"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    say "python3 -m venv failed: installing python3-venv"
    [ "$(id -u)" -eq 0 ] || { say "not root: apt-get install python3-venv"; exit 1; }
    DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$venv"
  fi
  timeout 600 "$py" -m pip install --disable-pip-version-check -q -r scripts/deploy-requirements.txt
  echo "$want" >"$stamp"
  say "installed $(grep -cv '^#' scripts/deploy-requirements.txt) pinned packages into $venv"
}

build_binary() {
  say "cargo build --release -p ccmount --no-default-features --features production"
  cargo build --release -p ccmount --locked --quiet --no-default-features --features production
  say "$("$bin" --version) at $bin"
}

# --- static checks ------------------------------------------------------------------------
lint_yaml() {
  "$venv/bin/yamllint" -c scripts/deploy/yamllint.yaml -f parsable docs/deploy
  say "yamllint: $(find docs/deploy -name '*.y*ml' | wc -l) YAML files under docs/deploy"
}

lint_shell() {
  local scripts=(scripts/test-deploy.sh scripts/build-image.sh scripts/test-image.sh
    scripts/release.sh scripts/check-reproducible.sh scripts/test-deb.sh)
  "$venv/bin/shellcheck" "${scripts[@]}"
  say "shellcheck: ${scripts[*]}"
}

workflow_schema() {
  local wf=docs/deploy/github-actions/verify-model.yml
  # The schema ships inside check-jsonschema: no network needed (none is used here).
  timeout 120 "$venv/bin/check-jsonschema" --builtin-schema vendor.github-workflows "$wf"
  say "$wf matches the GitHub Actions workflow schema bundled in check-jsonschema"
  "$py" scripts/deploy/check_workflow_argv.py "$bin" "$wf"
  say "its ccmount command lines parse with $bin"
}

kubernetes() {
  "$py" scripts/deploy/check_k8s.py --ccmount "$bin" docs/deploy/kubernetes
}

# --- host ---------------------------------------------------------------------------------
host_units() {
  local units=(docs/deploy/host/ccmount@.service docs/deploy/host/ccmount-secrets.service)
  "$py" scripts/deploy/check_unit_argv.py "$bin" docs/deploy/host/model.env "${units[@]}"
  command -v systemd-analyze >/dev/null || skip "systemd-analyze is not installed (apt-get install systemd): unit syntax not checked"
  if [ "$(id -u)" -ne 0 ] || ! command -v unshare >/dev/null; then
    skip "systemd-analyze verify needs root and unshare here (to put ccmount at /usr/local/bin privately)"
  fi
  mkdir -p "$work/units"
  cp "${units[0]}" "$work/units/ccmount@model.service"
  cp "${units[1]}" "$work/units/ccmount-secrets.service"
  # verify checks that ExecStart's binary exists: show it the real one at /usr/local/bin, in
  # a private mount namespace so the host is untouched. It exits 0 even on unknown keys, so
  # any output is a failure.
  # shellcheck disable=SC2016 # the inner script expands its own positional parameters
  timeout 120 unshare --mount --propagation private -- sh -ec '
    mount -t tmpfs tmpfs /usr/local/bin
    cp "$1" /usr/local/bin/ccmount
    cd "$2" && systemd-analyze verify ./ccmount@model.service ./ccmount-secrets.service' \
    sh "$(realpath "$bin")" "$work/units" >"$work/verify.out" 2>&1 || true
  if [ -s "$work/verify.out" ]; then
    cat "$work/verify.out" >&2
    say "systemd-analyze verify complained"; exit 1
  fi
  say "systemd-analyze verify: ${units[*]} (as ccmount@model.service): no warnings"
}

mount_helper() {
  local line
  line=$(grep -v '^#' docs/deploy/host/fstab.example | grep fuse.ccmount)
  mkdir -p "$work/mh/cipher" "$work/mh/mnt" "$work/mh/bin"
  # The documented line with its two paths pointed at scratch directories.
  sed -e "s#/data/enc/model#$work/mh/cipher#" -e "s#/mnt/model#$work/mh/mnt#" <<<"$line" >"$work/mh/fstab"
  timeout 30 findmnt --verify --tab-file "$work/mh/fstab" >"$work/mh/findmnt.out" 2>&1 || { cat "$work/mh/findmnt.out" >&2; exit 1; }
  grep -q '0 parse errors, 0 errors' "$work/mh/findmnt.out" || { cat "$work/mh/findmnt.out" >&2; exit 1; }
  say "findmnt --verify: docs/deploy/host/fstab.example parses (0 errors)"
  if [ "$(id -u)" -ne 0 ] || ! command -v unshare >/dev/null; then skip "the helper chain needs root and unshare"; fi
  command -v mount.fuse3 >/dev/null || [ -x /sbin/mount.fuse3 ] || skip "mount.fuse3 is not installed (fuse3)"
  # mount(8) -> mount.fuse3 -> `ccmount CIPHERDIR MOUNTPOINT -o OPTS`, with a recording
  # stand-in for ccmount at /usr/local/bin in a private mount namespace: this pins down the
  # argv the FUSE engineer's helper form receives, for the line we document.
  cat >"$work/mh/bin/ccmount" <<EOF
#!/bin/sh
for a in "\$@"; do printf '%s\n' "\$a"; done > "$work/mh/argv"
EOF
  chmod +x "$work/mh/bin/ccmount"
  # shellcheck disable=SC2016 # the inner script expands its own positional parameters
  timeout 60 unshare --mount --propagation private -- sh -ec '
    mount -t tmpfs tmpfs /usr/local/bin
    cp "$1/bin/ccmount" /usr/local/bin/ccmount
    mount -T "$1/fstab" "$1/mnt"' sh "$work/mh"
  printf '%s\n' "$work/mh/cipher" "$work/mh/mnt" -o \
    ro,nosuid,nodev,allow_other,passfile=/etc/ccmount/model.pass >"$work/mh/want"
  if ! diff -u "$work/mh/want" "$work/mh/argv" >&2; then say "the helper passed another argv"; exit 1; fi
  say "mount -T fstab: mount.fuse3 runs: ccmount $(tr '\n' ' ' <"$work/mh/argv")"
}

# --- image --------------------------------------------------------------------------------
image() {
  ((no_image == 0)) || skip "--no-image given"
  set +e
  scripts/build-image.sh --no-cargo
  local rc=$?
  set -e
  ((rc == 3)) && skip "neither podman nor buildah could be installed: only the root file system was staged"
  ((rc == 0)) || exit "$rc"
  scripts/test-image.sh
}

# --- verify --json against the published schema -------------------------------------------
verify_json() {
  [ -f "$schema" ] || skip "$schema is not in the tree yet (the format work publishes it)"
  timeout 60 "$venv/bin/check-jsonschema" --check-metaschema "$schema"
  say "$schema is a valid JSON Schema"
  local tree=$work/tree bad=$work/tree-bad rc
  "$py" scripts/deploy/materialize_corpus.py "$corpus" default "$tree" >/dev/null
  # The corpus holds two sparse files made by gocryptfs (holes): refused by default (exit 26,
  # "hole" findings), accepted and counted with --allow-holes. Both reports follow the schema.
  # Its symlink_abs points outside the tree: the keyed run needs --allow-outside-symlinks.
  set +e
  "$bin" verify --no-key --json "$tree" >"$work/holes.json" 2>"$work/holes.err"
  rc=$?
  set -e
  grep -q 'not available in this build yet' "$work/holes.err" && skip "'ccmount verify' is not implemented in this build yet"
  ((rc == 26)) || { cat "$work/holes.err" >&2; say "verify --no-key exited $rc on a tree with holes, want 26"; exit 1; }
  "$venv/bin/check-jsonschema" --schemafile "$schema" "$work/holes.json"
  say "verify --no-key --json (tree with holes, exit 26) matches the schema"

  set +e
  "$bin" verify --no-key --allow-holes --json "$tree" >"$work/nokey.json" 2>"$work/nokey.err"
  rc=$?
  set -e
  ((rc == 0)) || { cat "$work/nokey.err" >&2; say "verify --no-key --allow-holes exited $rc on a valid tree"; exit 1; }
  "$venv/bin/check-jsonschema" --schemafile "$schema" "$work/nokey.json"
  say "verify --no-key --allow-holes --json (valid tree, exit 0) matches the schema"

  "$bin" verify --passfile "$corpus/password.txt" --allow-holes --allow-outside-symlinks --json "$tree" >"$work/full.json"
  "$venv/bin/check-jsonschema" --schemafile "$schema" "$work/full.json"
  say "verify --passfile --allow-holes --allow-outside-symlinks --json (valid tree, exit 0) matches the schema"

  # One flipped bit in the last byte of the 1 MiB file's first block: corruption, exit 26.
  cp -a "$tree" "$bad"
  "$py" - "$bad/Csn-6wUULq_3tEc7qWtWQg" <<'EOF'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(18 + 4096 + 32 - 1)
    b = f.read(1)
    f.seek(-1, 1)
    f.write(bytes([b[0] ^ 1]))
EOF
  set +e
  "$bin" verify --passfile "$corpus/password.txt" --allow-holes --allow-outside-symlinks --json "$bad" >"$work/bad.json" 2>"$work/bad.err"
  rc=$?
  set -e
  ((rc == 26)) || { cat "$work/bad.err" >&2; say "verify on a tampered tree exited $rc, want 26"; exit 1; }
  [ -s "$work/bad.json" ] || { say "verify --json printed no report for a tampered tree (CI pipelines read it)"; exit 1; }
  "$venv/bin/check-jsonschema" --schemafile "$schema" "$work/bad.json"
  say "verify --passfile --json (tampered tree, exit 26) matches the schema"
}

t_start=$SECONDS
check "python tools (venv)" setup_venv
[ -x "$py" ] || { echo "deploy: no venv, cannot go on" >&2; exit 1; }
check "release build of ccmount" build_binary
[ -x "$bin" ] || { echo "deploy: no ccmount binary, cannot go on" >&2; exit 1; }
check "YAML lint" lint_yaml
check "shellcheck" lint_shell
check "Kubernetes manifests" kubernetes
check "GitHub Actions workflow" workflow_schema
check "systemd units" host_units
check "fstab line and mount helper" mount_helper
check "container image" image
check "verify --json schema" verify_json

printf '\ndeploy: %s passed, %s failed, %s skipped (%ss)\n' "$passed" "$failed" "$skipped" $((SECONDS - t_start)) >&2
if ((failed)); then
  printf 'deploy: failed: %s\n' "${failed_names[*]}" >&2
  exit 1
fi
