#!/usr/bin/env bash
# Builds ioclab in the synced checkout (/vagrant) the way the README says:
# scripts/setup.sh (Debian packages) then `make build` (cargo build --release).
# Shared by appliance.sh and endpoint.sh; run as root. Idempotent: a second
# run rebuilds only what changed.
set -euo pipefail

checkout=/vagrant
export DEBIAN_FRONTEND=noninteractive

# The README's prerequisite: Rust 1.85 or later from rustup (Debian 12's rustc
# is older). Installed once, for root, with the minimal profile.
export PATH="/root/.cargo/bin:$PATH"
if ! command -v cargo >/dev/null 2>&1; then
  echo "build.sh: installing the Rust toolchain (rustup, minimal profile)"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends curl ca-certificates >/dev/null
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y -q --profile minimal
fi

make -C "$checkout" build
