#!/usr/bin/env bash
# On the appliance, as root: prints what endpoint NAME needs to join, one
# KEY=value a line (the Vagrantfile's trigger reads them):
#   IOCLAB_APPLIANCE=https://APPLIANCE_IP:PORT
#   IOCLAB_FINGERPRINT=<the endpoint listener's certificate, SHA-256>
#   IOCLAB_ENDPOINT_TOKEN=<NAME's enrolment token>
# The token is made once per name and kept (root only) in /var/lib/ioclab/class,
# so running it again hands out the same one.
set -euo pipefail

name=${1:?usage: enrol.sh NAME}
: "${APPLIANCE_IP:?set by the Vagrantfile}"
config=/etc/ioclab/appliance.toml
kept=/var/lib/ioclab/class

port=$(sed -n 's/^endpoints_listen = "[^"]*:\([0-9]*\)"/\1/p' "$config")
port=${port:-8443}

install -d -m 0700 "$kept"
if [ ! -s "$kept/$name.env" ]; then
  made=$(ioclab endpoints token create --name "$name")
  token=$(printf '%s\n' "$made" | sed -n "s/^$name token: //p")
  if [ -z "$token" ]; then
    echo "enrol.sh: no token for $name in: $made" >&2
    exit 1
  fi
  (umask 077 && printf 'IOCLAB_ENDPOINT_TOKEN=%s\n' "$token" >"$kept/$name.env")
fi

printf 'IOCLAB_APPLIANCE=https://%s:%s\n' "$APPLIANCE_IP" "$port"
printf 'IOCLAB_FINGERPRINT=%s\n' "$(ioclab endpoints fingerprint)"
cat "$kept/$name.env"
