#!/usr/bin/env bash
# Installs what a fresh machine lacks for building and testing ccmount.
# Idempotent and quiet when everything is present. Needs root for apt-get.
set -euo pipefail

need_apt=()
command -v gocryptfs >/dev/null 2>&1 || need_apt+=(gocryptfs)
command -v fusermount3 >/dev/null 2>&1 || need_apt+=(fuse3)
command -v setfattr >/dev/null 2>&1 || need_apt+=(attr)
# The minisign CLI signs a manifest in tests (pinning::minisign_cli_signature_is_accepted).
command -v minisign >/dev/null 2>&1 || need_apt+=(minisign)

if ((${#need_apt[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing ${need_apt[*]} and not root; install them with apt-get" >&2
    exit 1
  fi
  echo "setup: installing ${need_apt[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: installing cargo-nextest" >&2
  cargo install --locked cargo-nextest >/dev/null
fi

# The object-storage tests start a real S3-compatible server: moto's server mode (PyPI),
# driven with boto3 (a moto dependency). Pinned; installed for the machine's python3.
if ! command -v moto_server >/dev/null 2>&1 || ! python3 -c 'import boto3, flask, moto' >/dev/null 2>&1; then
  echo "setup: installing moto[server] (test S3 server)" >&2
  python3 -m pip install --quiet --disable-pip-version-check 'moto[server]==5.2.1'
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
fi
