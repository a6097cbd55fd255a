#!/usr/bin/env bash
# Provisions a workshop endpoint VM (Vagrantfile): builds ioclab as the
# README says and installs the binary; the Vagrantfile's trigger then runs
# join.sh with the token the appliance made. Run as root; idempotent.
set -euo pipefail

checkout=/vagrant

bash "$checkout/scripts/vagrant/build.sh"
install -m 0755 "$checkout/target/release/ioclab" /usr/local/bin/ioclab
echo "ioclab built and installed; joining the appliance next"
