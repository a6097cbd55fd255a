#!/usr/bin/env bash
# The appliance's service install (appliance.sh runs it after the build):
# `ioclab install --systemd` with the web UI on every address, then the
# endpoint listener opened to the class network. As root. Idempotent.
# IOCLAB_BIN: the binary to install from (default: the checkout's release
# build); IOCLAB_INSTALL_ROOT: a staging root, as for `ioclab install --root`
# (then systemctl is never called): tests/install.rs runs it so, for real.
set -euo pipefail

checkout=$(cd "$(dirname "$0")/../.." && pwd)
bin=${IOCLAB_BIN:-$checkout/target/release/ioclab}
root=${IOCLAB_INSTALL_ROOT:-/}
config="${root%/}/etc/ioclab/appliance.toml"

"$bin" install --systemd --listen 0.0.0.0:8000 --scenarios "$checkout/lab-scenarios"

# Endpoints connect over the class network: the endpoint listener must not stay
# on loopback. An administrator's own value is left alone.
if grep -q '^endpoints_listen = "127\.0\.0\.1:' "$config"; then
  sed -i 's/^endpoints_listen = "127\.0\.0\.1:\([0-9]*\)"/endpoints_listen = "0.0.0.0:\1"/' "$config"
  echo "endpoints_listen: opened to the class network in $config"
  if [ "$root" = / ] && [ -d /run/systemd/system ]; then
    systemctl restart ioclab.service
  fi
fi
