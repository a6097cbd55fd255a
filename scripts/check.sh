#!/usr/bin/env bash
# What `make test` checks besides the Rust tests: shellcheck of every script,
# and `vagrant validate` of the Vagrantfile with 1 and 3 endpoints. Provider
# settings are skipped (--ignore-provider): no VirtualBox or libvirt is
# needed and no box is downloaded. scripts/setup.sh installs both tools.
set -euo pipefail
cd "$(dirname "$0")/.."

shellcheck scripts/*.sh scripts/vagrant/*.sh

for n in 1 3; do
  out=$(ENDPOINTS=$n vagrant validate --ignore-provider 2>&1) || {
    printf 'vagrant validate (ENDPOINTS=%s) failed:\n%s\n' "$n" "$out" >&2
    exit 1
  }
  machines=$(printf '%s\n' "$out" | sed -n 's/^==> \([a-z0-9-]*\): Ignoring provider config.*/\1/p' | tr '\n' ' ')
  want="appliance $(seq -f 'endpoint-%g' -s ' ' 1 "$n") "
  if [ "$machines" != "$want" ]; then
    echo "vagrant validate (ENDPOINTS=$n): machines '$machines', expected '$want'" >&2
    exit 1
  fi
done
echo "check.sh: shellcheck and vagrant validate passed"
